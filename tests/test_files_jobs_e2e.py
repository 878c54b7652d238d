"""Files across machines end to end: a "laptop" (the CLI, its own directory and CURVE key) submits a local file,
a worker (its own work dir) fetches it from the master's store, encodes it with real ffmpeg, verifies and
uploads the output, and the laptop fetches it back. Nothing is shared between them but the sockets.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.client import Client
from ffrtmp.local import LocalCluster
from ffrtmp.security import write_certificates
from tests.conftest import eventually
from tests.test_transport import free_port

pytestmark = pytest.mark.slow
TINY = ["--resolution", "160x120", "--fps", "10", "--duration", "1", "--bitrate", "100k", "--codec", "h264",
        "--engine", "ffmpeg", "--max-retries", "0"]


@dataclass
class Laptop:
    cluster: LocalCluster
    home: Path
    """The laptop's own directory: its config (CURVE key), its inputs, what it fetches."""
    keys: dict[str, str]
    """API keys by tenant."""
    work: Path
    """The worker's work dir (on the other machine)."""

    def ffrtmp(self, *args: str, tenant: str = "alpha", timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**self.cluster.env, "FFRTMP_CONFIG_DIR": str(self.home / "config"), "FFRTMP_DATA_DIR": str(self.home),
               "FFRTMP_API_KEY": self.keys[tenant]}
        argv = [sys.executable, "-m", "ffrtmp", *args, "--master", self.cluster.url,
                "--master-key", str(self.home / "master.key")]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.home,
                              check=False)

    def clip(self, name: str, seconds: int = 1) -> Path:
        path = self.home / name
        subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", "-preset",
                        "ultrafast", "-pix_fmt", "yuv420p", "-metadata", f"title={name}",  # distinct bytes per clip
                        f"file:{path}"], check=True, timeout=60)
        return path

    def submit(self, *args: str, tenant: str = "alpha") -> tuple[str, str]:
        """`jobs submit … --wait --json`: (the job id, stderr)."""
        done = self.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, *args, "--wait", "--json", tenant=tenant)
        assert done.returncode == 0, done.stdout + done.stderr + self.cluster.log_tail("w1", 30)
        job = json.loads(done.stdout)
        assert job["status"] == "completed", job
        return job["id"], done.stderr

    def client(self, tenant: str = "alpha") -> Client:
        return Client(self.cluster.url, api_key=self.keys[tenant], master_key=str(self.home / "master.key"),
                      client_key=self.home / "config" / "client.key_secret", timeout=10)

    def show(self, job_id: str, tenant: str = "alpha") -> dict[str, Any]:
        done = self.ffrtmp("jobs", "show", job_id, "--json", tenant=tenant)
        assert done.returncode == 0, done.stderr
        shown: dict[str, Any] = json.loads(done.stdout)
        return shown


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Iterator[Laptop]:
    root = tmp_path_factory.mktemp("files-jobs")
    with LocalCluster(root / "cluster") as cluster:
        cluster.start_master(["--files-port", str(free_port())])
        keys = {tenant: cluster.api_key("submit", tenant) for tenant in ("alpha", "beta")}
        cluster.start_worker("w1", "--api-key", cluster.api_key("worker", "*"))
        home = root / "laptop"
        (home / "config").mkdir(parents=True)
        write_certificates(home / "config", "client")  # the laptop's own CURVE key, not the worker's
        shutil.copy(cluster.master_dir / "master.key", home / "master.key")
        admin = Client(cluster.url, api_key=cluster.api_key("admin", "default"), timeout=10,
                       master_key=str(cluster.master_dir / "master.key"),
                       client_key=root / "cluster" / "config" / "client.key_secret")
        with admin:
            eventually(lambda: any(n["name"] == "w1" and n["status"] == "online" for n in admin.nodes()),
                       timeout=30, message="the worker to join")
        yield Laptop(cluster, home, keys, root / "cluster" / "work" / "w1")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_local_input_deleted_after_submit_still_runs_and_its_output_comes_back(laptop: Laptop) -> None:
    clip = laptop.clip("clip.mp4")
    digest, size = sha(clip), clip.stat().st_size
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--input", "clip.mp4")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    clip.unlink()  # the job must not need the laptop's file any more
    waited = laptop.ffrtmp("jobs", "show", job_id, "--follow", "--json")
    assert waited.returncode == 0, waited.stdout + waited.stderr + laptop.cluster.log_tail("w1", 30)
    job = laptop.show(job_id)
    assert job["status"] == "completed", job
    assert job["files"]["input"] == {"sha256": digest, "size": size, "name": "clip.mp4"}
    assert (laptop.work / "cache" / digest).read_bytes() != b"" and sha(laptop.work / "cache" / digest) == digest
    stored = job["files"]["output"]
    assert stored["name"].endswith(".mp4") and stored["size"] > 0

    fetched = laptop.ffrtmp("jobs", "fetch", job_id, "-o", "back.mp4")
    assert fetched.returncode == 0, fetched.stderr
    back = laptop.home / "back.mp4"
    assert fetched.stdout.strip() == "back.mp4"
    assert sha(back) == stored["sha256"] and back.stat().st_size == stored["size"]
    assert not (laptop.home / "back.mp4.part").exists()


def test_submit_wait_fetch_downloads_the_output_and_an_interrupted_fetch_resumes(laptop: Laptop) -> None:
    laptop.clip("resume.mp4", seconds=2)
    (laptop.home / "out").mkdir()
    job_id, _ = laptop.submit("--input", "resume.mp4", "--fetch", "-o", "out")
    stored = laptop.show(job_id)["files"]["output"]
    whole = laptop.home / "out" / stored["name"]
    assert sha(whole) == stored["sha256"]
    kept = stored["size"] // 3
    (laptop.home / "again.mp4.part").write_bytes(whole.read_bytes()[:kept])  # what a dropped fetch left
    done = laptop.ffrtmp("jobs", "fetch", job_id, "-o", "again.mp4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["received"] == stored["size"] - kept
    assert sha(laptop.home / "again.mp4") == stored["sha256"] == report["sha256"]


def test_fetch_into_a_new_directory_with_a_slash_and_a_missing_one_is_exit_2_before_submitting(
        laptop: Laptop) -> None:
    laptop.clip("dirs.mp4")
    job_id, _ = laptop.submit("--input", "dirs.mp4")
    done = laptop.ffrtmp("jobs", "fetch", job_id, "-o", "made/here/", "--json")
    assert done.returncode == 0, done.stderr
    stored = laptop.show(job_id)["files"]["output"]
    assert json.loads(done.stdout)["path"] == f"made/here/{stored['name']}"
    assert sha(laptop.home / "made" / "here" / stored["name"]) == stored["sha256"]
    with laptop.client() as client:
        before = len(client.list(limit=1000))
    typo = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--input", "dirs.mp4", "--wait",
                         "--fetch", "-o", "nowhere/out.mp4")
    assert typo.returncode == 2 and "output" in typo.stderr and "nowhere" in typo.stderr, typo.stderr
    with laptop.client() as client:
        assert len(client.list(limit=1000)) == before, "nothing was submitted"


def test_resubmitting_the_same_input_uploads_nothing_and_from_uploads_each_once(laptop: Laptop) -> None:
    clip = laptop.clip("same.mp4")
    _, first = laptop.submit("--input", "same.mp4")
    assert f"{clip.stat().st_size} bytes sent" in first
    with laptop.client() as client:
        again = client.upload(clip)
    assert (again.sent, again.had, again.sha256) == (0, True, sha(clip))
    jobs = laptop.home / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"input": name, "priority": priority}) + "\n"
                            for name, priority in (("./same.mp4", "high"), (str(clip), "low"))))
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--from", str(jobs), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [job["status"] for job in json.loads(done.stdout)] == ["completed"] * 2
    assert done.stderr.count("input ") == 1 and "0 bytes sent" in done.stderr


def test_the_python_api_uploads_a_path_and_fetches_the_output(laptop: Laptop) -> None:
    clip = laptop.clip("api.mp4")
    seen: list[tuple[int, int]] = []
    with laptop.client() as client:
        job_id = client.submit("files", input=clip, resolution="160x120", fps=10, duration=1, bitrate="100k",
                               engine="ffmpeg", max_retries=0)
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "completed", job
        assert job["files"]["input"]["sha256"] == sha(clip)
        done = client.fetch(job_id, laptop.home, progress=lambda got, total: seen.append((got, total)))
    assert done.path == laptop.home / job["files"]["output"]["name"]
    assert sha(done.path) == job["files"]["output"]["sha256"] == done.sha256
    assert seen and seen[-1] == (done.size, done.size)


def test_another_tenant_cannot_fetch_the_output(laptop: Laptop) -> None:
    laptop.clip("private.mp4")
    job_id, _ = laptop.submit("--input", "private.mp4")
    done = laptop.ffrtmp("jobs", "fetch", job_id, "-o", "stolen.mp4", tenant="beta")
    assert done.returncode == 6, done.stdout + done.stderr
    assert not (laptop.home / "stolen.mp4").exists()


def test_a_job_without_a_stored_output_is_exit_6(laptop: Laptop) -> None:
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", "--engine", "null", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    fetched = laptop.ffrtmp("jobs", "fetch", job_id)
    assert fetched.returncode == 6
    assert "no stored output" in fetched.stderr


def test_upload_always_of_a_missing_file_is_exit_2_naming_it(laptop: Laptop) -> None:
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--input", "nowhere.mp4",
                         "--upload", "always")
    assert done.returncode == 2
    assert "input" in done.stderr and "nowhere.mp4" in done.stderr


def test_upload_never_leaves_the_path_to_the_workers(laptop: Laptop) -> None:
    """The laptop's file exists, but `never` means a path on the workers: this worker has no --input-root, so
    the job waits for one that can see the directory, and says so (nothing was uploaded)."""
    laptop.clip("shared.mp4")
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--input", str(laptop.home / "shared.mp4"),
                         "--upload", "never", "--json")
    assert done.returncode == 0, done.stderr
    [job_id] = json.loads(done.stdout)["ids"]
    waiting = eventually(lambda: (lambda job: job if job.get("reason") else None)(laptop.show(job_id)), timeout=30,
                         message="the job's wait reason")
    assert waiting["status"] == "pending", waiting
    assert f"can see {laptop.home} (add --input-root" in waiting["reason"], waiting
    assert waiting["files"]["input"] is None
    assert laptop.ffrtmp("jobs", "cancel", job_id).returncode == 0


def test_an_input_whose_stored_bytes_rotted_fails_its_job_saying_so_and_uploads_again(laptop: Laptop) -> None:
    """The master verified the upload; its copy changed on disk afterwards (bit rot, a bad disk). The worker's
    cache sees the wrong hash, the master sees it too as it sends and drops its copy: the job fails saying so,
    never encoded from wrong bytes, and the next submit of the file stores it again."""
    clip = laptop.clip("rotted.mp4")
    with laptop.client() as client:
        stored = client.upload(clip)
    on_disk = laptop.cluster.master_dir / "files" / "objects" / stored.sha256[:2] / stored.sha256
    data = bytearray(on_disk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off
    on_disk.chmod(0o600)
    on_disk.write_bytes(bytes(data))
    done = laptop.ffrtmp("jobs", "submit", "--scenario", "files", *TINY, "--input", "rotted.mp4", "--wait",
                         "--json")
    job = json.loads(done.stdout)
    assert job["status"] == "failed", job
    # the first fetch finds the wrong hash (the worker's check) and the master's own (it drops its copy)
    assert "damaged in the master's store and removed: upload it again" in job["error"], job["error"]
    assert not (laptop.work / "cache" / stored.sha256).exists()
    assert "no longer hashes to its name" in laptop.cluster.log_tail("master", 200)
    again, stderr = laptop.submit("--input", "rotted.mp4")  # the laptop still has the good bytes
    assert f"{clip.stat().st_size} bytes sent" in stderr  # not "already stored": all of it went again
    assert laptop.show(again)["files"]["input"]["sha256"] == stored.sha256


def test_a_prefetched_job_fetches_its_input_while_it_waits(laptop: Laptop) -> None:
    clip = laptop.clip("ahead.mp4")
    with laptop.client() as client:
        long = client.submit("files", resolution="640x360", fps=30, duration=60, bitrate="1000k", preset="slower",
                             engine="ffmpeg", max_retries=0, quality="none")
        eventually(lambda: client.get(long)["status"] == "running", timeout=30, message="the long job to run")
        held = client.submit("files", input=clip, resolution="160x120", fps=10, duration=1, bitrate="100k",
                             engine="ffmpeg", max_retries=0)
        try:
            job = client.get(held)
            assert job["status"] == "assigned" and job["node"] == "w1", "held behind the long job (prefetch 1)"
            cached = laptop.work / "cache" / sha(clip)
            eventually(cached.exists, timeout=30, message="the held job's input to be fetched ahead")
            assert client.get(long)["status"] == "running" and client.get(held)["status"] == "assigned"
        finally:
            client.cancel(long)
        assert client.wait(held, timeout=60)["status"] == "completed"
