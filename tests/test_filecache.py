"""The worker's input cache: verified entries only, one fetch per file, LRU eviction that spares files in use."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from ffrtmp.errors import FileMismatch
from ffrtmp.files.transfer import file_sha256
from ffrtmp.worker.filecache import CacheFull, Fetch, FileCache, Wanted


def wanted(data: bytes) -> Wanted:
    return Wanted(hashlib.sha256(data).hexdigest(), len(data))


def writer(data: bytes, calls: list[Path] | None = None) -> Fetch:
    def fetch(partial: Path) -> None:
        if calls is not None:
            calls.append(partial)
        partial.write_bytes(data)
        return None
    return fetch


def test_a_fetched_file_is_verified_then_named_by_its_hash(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=0)
    data = os.urandom(3000)
    with cache.use(wanted(data), writer(data)) as path:
        assert path == tmp_path / "cache" / hashlib.sha256(data).hexdigest()
        assert path.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [path.name], "no partial left"
    assert file_sha256(path) == path.name


def test_a_cached_file_is_not_fetched_again(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=0)
    data = b"x" * 100
    calls: list[Path] = []
    for _ in range(3):
        with cache.use(wanted(data), writer(data, calls)):
            pass
    assert len(calls) == 1
    assert cache.fetched == 1


def test_concurrent_attempts_needing_one_file_fetch_it_once(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=0)
    data = os.urandom(10_000)
    calls: list[Path] = []
    entered = threading.Event()
    release = threading.Event()

    def slow(partial: Path) -> str | None:
        calls.append(partial)
        entered.set()
        assert release.wait(10)
        partial.write_bytes(data)
        return None

    seen: list[bytes] = []

    def job() -> None:
        with cache.use(wanted(data), slow) as path:
            seen.append(path.read_bytes())

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert entered.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert seen == [data] * 4


def test_a_hash_mismatch_is_fetched_again_then_fails_naming_it(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=0, tries=3)
    good = b"a" * 500
    answers = [b"b" * 500, good]  # a corrupt transfer, then the right bytes
    with cache.use(wanted(good), lambda p: p.write_bytes(answers.pop(0)) and None) as path:
        assert path.read_bytes() == good
    always_bad = FileCache(tmp_path / "other", max_bytes=0, tries=2)
    calls: list[Path] = []
    with pytest.raises(FileMismatch, match="SHA-256"), always_bad.use(wanted(good), writer(b"c" * 500, calls)):
        pass
    assert len(calls) == 2
    assert not any((tmp_path / "other").iterdir()), "nothing unverified is kept"
    with pytest.raises(FileMismatch, match="499 bytes came, not 500"), \
            FileCache(tmp_path / "short", 0, tries=1).use(wanted(good), writer(good[:-1])):
        pass


def test_the_least_recently_used_file_goes_first(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=250)
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    for index, data in enumerate((a, b)):
        with cache.use(wanted(data), writer(data)) as path:
            os.utime(path, (1000 + index, 1000 + index))
    with cache.use(wanted(a), writer(a)):  # a is used again: b is now the oldest
        pass
    with cache.use(wanted(c), writer(c)):
        pass
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {wanted(a).sha256, wanted(c).sha256}


def test_a_file_in_use_is_never_evicted(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=250)
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    with cache.use(wanted(a), writer(a)) as held:
        os.utime(held, (1000, 1000))  # the oldest, but in use
        with cache.use(wanted(b), writer(b)):
            pass
        with cache.use(wanted(c), writer(c)):
            pass
        assert held.read_bytes() == a
    assert {p.name for p in tmp_path.iterdir()} == {wanted(a).sha256, wanted(c).sha256}


def test_a_file_that_cannot_fit_fails_clearly_and_fetches_nothing(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=150)
    a = b"a" * 100
    calls: list[Path] = []
    with cache.use(wanted(a), writer(a)), pytest.raises(CacheFull, match="--cache-max-bytes 150"), \
            cache.use(wanted(b"b" * 100), writer(b"b", calls)):
        pass
    with pytest.raises(CacheFull), cache.use(wanted(b"z" * 200), writer(b"z", calls)):
        pass
    assert calls == []


def test_the_order_survives_a_restart(tmp_path: Path) -> None:
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    first = FileCache(tmp_path, max_bytes=250)
    for index, data in enumerate((b, a)):
        with first.use(wanted(data), writer(data)) as path:
            os.utime(path, (1000 + index, 1000 + index))
    again = FileCache(tmp_path, max_bytes=250)
    with again.use(wanted(c), writer(c)):
        pass
    assert {p.name for p in tmp_path.iterdir()} == {wanted(a).sha256, wanted(c).sha256}


def test_a_resumed_fetch_sees_the_bytes_of_the_interrupted_one(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=0)
    data = os.urandom(1000)
    seen: list[int] = []

    def interrupted(partial: Path) -> str | None:
        partial.write_bytes(data[:400])
        raise ConnectionError("dropped")

    with pytest.raises(ConnectionError), cache.use(wanted(data), interrupted):
        pass

    def resume(partial: Path) -> str | None:
        seen.append(partial.stat().st_size)
        with partial.open("ab") as handle:
            handle.write(data[partial.stat().st_size:])
        return hashlib.sha256(data).hexdigest()  # checked by the transfer: not hashed again

    with cache.use(wanted(data), resume) as path:
        assert path.read_bytes() == data
    assert seen == [400]


def test_a_bad_hash_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileCache(tmp_path, 0).path_of("../etc/passwd")
