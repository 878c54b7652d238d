"""`--db postgresql://…` for real: `ffrtmp keys` on the database, and a master with a worker running FFmpeg."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from ffrtmp import __version__
from ffrtmp.errors import InvalidInput
from ffrtmp.local import LocalCluster
from ffrtmp.master.auth import Authority
from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.master.store.postgres import open_postgres_store
from ffrtmp.worker.inputs import ensure_generated
from tests.test_cli_keys import run


def test_keys_refuse_a_database_no_master_migrated_and_name_the_fix(postgres_url: str) -> None:
    code, out = run("keys", "api", "list", "--db", postgres_url)
    assert code == 2
    assert "is not migrated" in out and "ffrtmp master --db" in out and "Traceback" not in out
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        # the refusal created nothing: a tool never changes the schema under a master
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_keys_create_list_and_revoke_on_postgres(postgres_url: str) -> None:
    open_postgres_store(postgres_url).close()  # what a master's first start does
    code, out = run("keys", "api", "create", "--role", "submit", "--tenant", "acme", "--db", postgres_url, "--json")
    assert code == 0, out
    created = json.loads(out)
    store = open_postgres_store(postgres_url, migrate=False)
    try:
        assert Authority(store, None).authenticate(created["key"]).tenant == "acme"
    finally:
        store.close()
    listed = json.loads(run("keys", "api", "list", "--db", postgres_url, "--json")[1])
    assert [(k["id"], k["role"], k["tenant"], k["revoked_at"]) for k in listed] == [
        (created["id"], "submit", "acme", None)]
    assert run("keys", "api", "revoke", created["id"], "--db", postgres_url)[0] == 0
    assert json.loads(run("keys", "api", "list", "--db", postgres_url, "--json")[1])[0]["revoked_at"]
    assert run("keys", "api", "revoke", created["id"], "--db", postgres_url)[0] == 6
    assert run("keys", "quota", "set", "acme", "--max-pending", "5", "--db", postgres_url)[0] == 0
    quotas = json.loads(run("keys", "quota", "list", "--db", postgres_url, "--json")[1])
    assert quotas["acme"]["max_pending"] == 5


def test_protected_mode_sees_the_keys_of_a_postgresql_store(postgres_url: str, tmp_path: Path) -> None:
    """A master on PostgreSQL with keys is secured, so it may listen beyond loopback; without any it may not."""

    def master(bind: str) -> MasterServer:
        return MasterServer(MasterOptions(bind=bind, port=0, data_dir=tmp_path / "m", db=postgres_url, metrics=False))

    server = master("auto")  # a new database: the master's start migrates it, and it has no key
    try:
        assert server.store.had_api_keys() is False
        assert server.options.bind == "127.0.0.1"
    finally:
        server.close()
    with pytest.raises(InvalidInput, match="would let anyone who reaches it be an admin"):
        master("0.0.0.0")
    assert run("keys", "api", "create", "--role", "admin", "--db", postgres_url)[0] == 0
    assert run("keys", "api", "revoke", json.loads(run("keys", "api", "list", "--db", postgres_url, "--json")[1]
                                                   )[0]["id"], "--db", postgres_url)[0] == 0
    server = master("auto")  # a key was made (and revoked: protected mode never opens again)
    try:
        assert server.store.had_api_keys() is True
        assert server.options.bind == "0.0.0.0"
    finally:
        server.close()


def test_a_url_that_leads_nowhere_is_one_line_naming_db(tmp_path: Path) -> None:
    code, out = run("keys", "api", "list", "--db", "postgresql://postgres@127.0.0.1:1/none")
    assert code == 2 and out.startswith("db: ") and "cannot connect" in out and "Traceback" not in out


@pytest.mark.slow
def test_a_master_on_postgres_runs_a_real_ffmpeg_job_to_completion(tmp_path: Path, ffmpeg: str,
                                                                   postgres_url: str) -> None:
    source = ensure_generated(ffmpeg, tmp_path / "inputs", "160x120", 10, 1.0)
    with LocalCluster(tmp_path / "cluster", master_args=["--db", postgres_url],
                      env={"FFRTMP_INPUT_ROOT": str(source.parent)}) as cluster:
        cluster.start_master()
        cluster.start_worker("w1")
        cluster.wait_for_nodes(["w1"])
        with cluster.client(timeout=30) as client:
            job_id = client.submit("pg", engine="ffmpeg", input=str(source), resolution="160x120", duration=1,
                                   codec="h264", preset="ultrafast", bitrate="200k")
            job = client.wait(job_id, timeout=60)
    assert job["status"] == "completed", job
    store = open_postgres_store(postgres_url, migrate=False)
    try:
        stored = store.get_job(job_id)
        assert stored is not None and stored["status"] == "completed" and stored["node"] == "w1"
        assert [h["status"] for h in store.job_history(job_id)] == ["pending", "assigned", "running", "completed"]
        assert store.get_node("w1") is not None
    finally:
        store.close()


@pytest.mark.slow
def test_a_postgresql_master_serves_health_and_job_gauges_and_notices_a_lost_server(
        tmp_path: Path, postgres_url: str) -> None:
    from ffrtmp.master.server import STATE_FILE
    from tests.conftest import eventually
    from tests.scrape import get, scrape, value
    from tests.test_store_postgres_outage import relay_to

    with contextlib.ExitStack() as stack:
        url, relay = stack.enter_context(relay_to(postgres_url))
        cluster = stack.enter_context(LocalCluster(tmp_path / "cluster", master_args=["--db", url]))
        cluster.start_master(metrics_port=0)
        base = f"http://127.0.0.1:{json.loads((cluster.master_dir / STATE_FILE).read_text())['metrics_port']}"
        with cluster.client(timeout=30) as client:
            for _ in range(2):
                client.submit("pg", engine="null", queue="live", priority="high")
            client.submit("pg", engine="null")
        eventually(lambda: get(f"{base}/ready")[0] == 200, message="the master to be ready")
        assert get(f"{base}/health")[0] == 200
        families = scrape(base)
        assert value(families, "ffrtmp_jobs_pending") == 3
        assert value(families, "ffrtmp_queue_depth", queue="live", priority="high") == 2
        assert value(families, "ffrtmp_queue_depth", queue="default", priority="medium") == 1
        assert value(families, "ffrtmp_store_writable") == 1
        assert value(families, "ffrtmp_store_free_bytes") is None, "no local disk behind a PostgreSQL store"

        relay.cut()  # the database server is gone: /health says so, /metrics still answers without job gauges
        eventually(lambda: get(f"{base}/health")[0] == 503, message="/health to notice the lost server")
        eventually(lambda: "writes are refused" in cluster.log_tail("master", 100), message="degraded mode")
        said = cluster.log_tail("master", 100)
        assert "store unavailable: PostgreSQL at postgresql://" in said and "check the disk" not in said, said
        families = scrape(base)
        assert value(families, "ffrtmp_jobs_pending") is None and value(families, "ffrtmp_master_info",
                                                                          version=__version__) == 1
        relay.restore()
        eventually(lambda: get(f"{base}/health")[0] == 200, message="/health once the server is back")
        assert value(scrape(base), "ffrtmp_jobs_pending") == 3
        assert "Traceback" not in cluster.log_tail("master")
