"""The store contract for stored files (store/files.py), on every backend in tests/store_backends.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ffrtmp.jobspec import validate_submission
from ffrtmp.master.store import Store
from ffrtmp.master.store.files import FileRef
from tests.store_backends import BACKENDS

T0 = 1_700_000_000.0
A, B = "a" * 64, "b" * 64
REF_A: FileRef = {"sha256": A, "size": 10, "name": "a.mp4"}
REF_B: FileRef = {"sha256": B, "size": 20, "name": "b.mp4"}


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    factory: Callable[[Path], Store] = BACKENDS[request.param]
    db = factory(tmp_path)
    yield db
    db.close()


def add_job(store: Store, tenant: str = "t1") -> str:
    with store.transaction():
        (job_id,) = store.insert_jobs([validate_submission({"scenario": "test1"})], T0, 3, tenant=tenant)
    return job_id


def test_a_file_belongs_to_its_tenant_only(store: Store) -> None:
    with store.transaction():
        store.put_file("t1", A, 10, "a.mp4", T0)
    row = store.find_file("t1", A)
    assert row is not None and (row["size"], row["name"], row["created_at"]) == (10, "a.mp4", T0)
    assert store.find_file("t2", A) is None
    assert store.tenant_file_bytes("t1") == 10 and store.tenant_file_bytes("t2") == 0


def test_putting_again_renames_and_touches_but_keeps_the_creation_time(store: Store) -> None:
    with store.transaction():
        store.put_file("t1", A, 10, "a.mp4", T0)
        store.put_file("t1", A, 10, "again.mp4", T0 + 5)
        assert store.touch_file("t1", A, T0 + 9)
        assert not store.touch_file("t2", A, T0 + 9)
    row = store.find_file("t1", A)
    assert row is not None and (row["name"], row["created_at"], row["last_used"]) == ("again.mp4", T0, T0 + 9)
    assert store.tenant_file_bytes("t1") == 10


def test_bytes_quota_is_per_tenant_and_beside_the_job_quotas(store: Store) -> None:
    assert store.bytes_quota("t1") is None
    with store.transaction():
        store.set_quota("t1", 5, None)
        store.set_bytes_quota("t1", 1000)
    assert store.bytes_quota("t1") == 1000 and store.bytes_quota("t2") is None
    assert store.quotas()["t1"]["max_pending"] == 5  # the job quota is kept
    with store.transaction():
        store.set_bytes_quota("t1", None)
    assert store.bytes_quota("t1") is None


def test_an_output_is_the_jobs_only_once_its_attempt_completed_it(store: Store) -> None:
    job = add_job(store)
    with store.transaction():
        store.put_file("t1", A, 10, "a.mp4", T0)
        store.link_job_file(job, "input", 0, "t1", REF_A, T0)
        attempt = store.assign_job(job, "n1", T0)["attempt"]
        store.put_file("t1", B, 20, "b.mp4", T0)
        store.link_job_file(job, "output", attempt, "t1", REF_B, T0)
    assert store.job_file(job, "output", attempt) == REF_B
    assert store.job_file(job, "output", attempt + 1) is None
    assert store.job_files(job) == {"input": REF_A, "output": None}  # not completed yet
    with store.transaction():
        store.finish_job(job, attempt, "completed", T0 + 1)
    assert store.job_files(job) == {"input": REF_A, "output": REF_B}


def test_collection_keeps_what_jobs_name_and_takes_stale_outputs(store: Store) -> None:
    job = add_job(store)
    c, d = "c" * 64, "d" * 64
    with store.transaction():
        for sha in (A, B, c, d):
            store.put_file("t1", sha, 1, "x", T0)
        store.link_job_file(job, "input", 0, "t1", REF_A, T0)
        first = store.assign_job(job, "n1", T0)["attempt"]
        store.link_job_file(job, "output", first, "t1", {"sha256": c, "size": 1, "name": "x"}, T0)
        store.requeue_job(job, first, T0, failure="crash", error="x", not_before=T0)
        second = store.assign_job(job, "n1", T0)["attempt"]
        store.link_job_file(job, "output", second, "t1", {"sha256": d, "size": 1, "name": "x"}, T0)
    assert sorted(store.stale_files(T0 + 1, 100)) == [("t1", B), ("t1", c)]
    assert store.stale_files(T0, 100) == []  # used at T0: not older than the cut-off
    with store.transaction():
        store.put_file("t2", c, 1, "x", T0)
        assert store.delete_file("t1", c)  # t2 still holds the object
        assert not store.delete_file("t1", B)
    assert store.find_file("t1", c) is None and store.find_file("t2", c) is not None
    assert store.job_file(job, "output", first) is None
    assert store.job_file(job, "output", second) is not None
