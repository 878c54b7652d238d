"""The worker's input policy: which paths and hosts a job may name, and what FFmpeg and GStreamer get.

Pure parts (address checks, path resolution, the child environment, the log filter, submit checks) and
real ffmpeg/gst-launch runs through the runner (the environment a real child sees, a redirect, a refused
port, the generated-source cache).
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.failures import Failure
from ffrtmp.jobspec import validate_submission
from ffrtmp.worker.childenv import child_environment
from ffrtmp.worker.engines.gstreamer import build as gst_build
from ffrtmp.worker.inputs import generated_path
from ffrtmp.worker.joblog import SUMMARY, JobLogFilter
from ffrtmp.worker.netpolicy import NetworkRefused, address_problem, check_destination
from ffrtmp.worker.sources import InputPolicy, SourceRefused, ffmpeg_input, resolve_local_input
from tests.conftest import _require, child_processes, eventually
from tests.rtmp import RtmpServer
from tests.test_gstreamer_engine import context as gst_context
from tests.test_runner import LONG, Harness, finish, make_attempt

# ---- where URLs may point ------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("127.8.9.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("10.0.0.5", "private"),
    ("172.16.3.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"), ("0.0.0.0", "unspecified"),
    ("239.1.2.3", "multicast"), ("100.64.0.1", "not public"), ("93.184.216.34", None), ("2606:4700::1111", None),
])
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/meta.json?.txt", "http://localhost/x.mp4",
                                 "rtmp://[::1]/live/k", "http://169.254.169.254/latest/meta-data/",
                                 "rtsp://192.168.1.20/stream", "http://[::ffff:127.0.0.1]:9090/metrics",
                                 "http://2130706433/", "http://0x7f.1/"])
def test_private_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(NetworkRefused, match=r"^input: .*--allow-private-network"):
        check_destination("input", url, allow_private=False)
    check_destination("input", url, allow_private=True)


def test_a_public_address_passes() -> None:
    check_destination("output", "rtmp://93.184.216.34/live/key", allow_private=False)


def test_a_host_that_does_not_resolve_is_worth_a_retry(strict: Harness) -> None:
    """Never opened (where it points is unknown), but DNS may be back for the next attempt: not invalid_input."""
    result = strict.run(make_attempt("job-dns", input="http://ffrtmp-test.invalid/a.mp4")).finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert result["error"] == "input: the host 'ffrtmp-test.invalid' could not be resolved on this worker"


# ---- local inputs --------------------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(an input root holding clip.mp4 and a link out of it, a secret file outside it)."""
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.mp4").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (root / "escape.mp4").symlink_to(secret)
    return root, secret


def test_a_local_input_resolves_inside_a_root(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    clip = (root / "sub" / "clip.mp4").resolve()
    assert resolve_local_input(str(root / "sub" / "clip.mp4"), (root,)) == clip
    assert resolve_local_input("sub/clip.mp4", (root.parent / "other", root)) == clip  # relative: each root


@pytest.mark.parametrize("name", ["secret", "escape.mp4", "sub/../../secret.txt", "missing.mp4", "sub", "dir"])
def test_outside_missing_linked_out_or_not_a_file_all_read_the_same(roots: tuple[Path, Path], name: str) -> None:
    root, secret = roots
    given = {"secret": str(secret), "dir": str(root)}.get(name, name)
    with pytest.raises(SourceRefused) as refused:
        resolve_local_input(given, (root,))
    assert str(refused.value) == (f"input {given!r} does not exist on this worker or is outside its --input-root "
                                  "dirs")  # one answer: a job cannot tell which paths exist


def test_a_worker_without_roots_reads_no_local_file(roots: tuple[Path, Path]) -> None:
    _, secret = roots
    with pytest.raises(SourceRefused, match="it has none: start it with --input-root DIR"):
        resolve_local_input(str(secret), ())


# ---- what FFmpeg is given ------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "protocols"), [
    ("/media/a.mp4", "file"), ("http://h/a.mp4", "http,tcp"), ("https://h/a.mp4", "https,http,tls,tcp"),
    ("rtmp://h/live/k", "rtmp,tcp"), ("rtsp://h/s", "rtsp,rtp,udp,tcp"), ("srt://h:9000", "srt"),
])
def test_ffmpeg_gets_the_protocols_of_the_input_kind_and_media_demuxers_only(source: str, protocols: str) -> None:
    argv = ffmpeg_input(source)
    assert argv[argv.index("-protocol_whitelist") + 1] == protocols
    demuxers = argv[argv.index("-format_whitelist") + 1].split(",")
    assert "mov" in demuxers and not {"tty", "concat", "hls", "dash", "image2", "lavfi", "sdp", "data"} & set(demuxers)
    assert argv[-2:] == ["-i", source if "://" in source else "file:" + source]
    assert ("-max_redirects" in argv) == source.startswith("http")


def test_gstreamer_reads_http_without_following_redirects(tmp_path: Path) -> None:
    argv = gst_build(gst_context(tmp_path, input_path="https://cdn.example.com/a.mp4")).argv
    assert argv[2:6] == ["souphttpsrc", 'location="https://cdn.example.com/a.mp4"', "automatic-redirect=false", "!"]


def test_the_child_environment_keeps_what_programs_need_and_no_secret() -> None:
    given = {"PATH": "/usr/bin", "HOME": "/home/w", "LANG": "C.UTF-8", "LC_ALL": "C", "XDG_RUNTIME_DIR": "/run/u",
             "GST_PLUGIN_PATH": "/opt/gst", "LD_LIBRARY_PATH": "/opt/cuda", "CUDA_VISIBLE_DEVICES": "0",
             "FFRTMP_API_KEY": "ffk_x", "FFRTMP_WORK_DIR": "/w", "MASTER_API_KEY": "k", "OPENAI_API_KEY": "k",
             "AWS_SECRET_ACCESS_KEY": "k", "GST_AUTH_TOKEN": "k", "SSH_AUTH_SOCK": "/tmp/s", "PYTHONPATH": "/x"}
    assert child_environment(given) == {
        "PATH": "/usr/bin", "HOME": "/home/w", "LANG": "C.UTF-8", "LC_ALL": "C", "XDG_RUNTIME_DIR": "/run/u",
        "GST_PLUGIN_PATH": "/opt/gst", "LD_LIBRARY_PATH": "/opt/cuda", "CUDA_VISIBLE_DEVICES": "0"}


def test_generated_sources_are_named_by_every_parameter() -> None:
    names = {generated_path(Path("/w/inputs"), res, fps, seconds, audio).name
             for res in ("160x120", "320x240") for fps in (10, 30) for seconds in (1.0, 2.0) for audio in (False, True)}
    assert len(names) == 16
    name = generated_path(Path("/w/inputs"), "160x120", 10, 1.0, False).name
    assert name.startswith("testsrc2_160x120_10fps_1s_") and len(name.rsplit("_", 1)[1]) == len("0123456789ab.mp4")


# ---- what the submitter is told ------------------------------------------------------------------------


def test_the_job_log_shows_no_worker_path(tmp_path: Path) -> None:
    log = JobLogFilter(tmp_path / "work")
    line = f"$ /usr/bin/ffmpeg -i file:{tmp_path}/work/inputs/a.mp4 file:{tmp_path / 'work'}/outputs/j.mp4"
    assert log.line(line) == "$ ffmpeg -i file:WORK_DIR/inputs/a.mp4 file:WORK_DIR/outputs/j.mp4"


def test_network_errors_of_a_url_input_are_summarised(tmp_path: Path) -> None:
    log = JobLogFilter(tmp_path)
    refused = "[tcp @ 0x55d] Connection to tcp://10.0.0.7:6379 failed: Connection refused"
    assert log.line(refused) == refused  # a local input: nothing to hide
    log.url_input = True
    for line in (refused, "http://10.0.0.7:8500/v1/kv: Server returned 404 Not Found",
                 "[tcp @ 0x1] Connection to tcp://10.0.0.8:22 failed: Connection timed out"):
        assert log.line(line) == SUMMARY
    assert log.line("Stream #0:0: Video: h264") == "Stream #0:0: Video: h264"


@pytest.mark.parametrize(("field", "value"), [
    ("input", "concat:/etc/passwd|/etc/X11/rgb.txt"), ("input", "file:/etc/passwd"), ("input", "pipe:0"),
    ("input", "fd:3"), ("input", "lavfi:testsrc"), ("input", "subfile,,start,0,end,100,,:/etc/passwd"),
    ("input", "data:text/plain,hello"), ("input", "clips/../../etc/passwd"),
    ("input", "tcp://1.2.3.4:9?listen=1"), ("input", "udp://1.2.3.4:9?localport=53"),
    ("input", "srt://1.2.3.4:9?mode=listener"), ("input", "http://h/a.mp4?listen=1"), ("input", "http:///a.mp4"),
    ("output", "rtmp://h/live/k?listen=1"),
    ("output", "concat:/etc/passwd|/etc/X11/rgb.txt/x.mp4"),
])
def test_submit_refuses_protocol_tricks_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_submission({"scenario": "t", field: value})
    assert refused.value.field == field


@pytest.mark.parametrize("value", ["/media/clip.mp4", "clips/my clip.mp4", "/media/notes:v2.mp4",
                                   "https://cdn.example.com/a.mp4?sig=abc&exp=1", "rtsp://cam.lan/stream?channel=1",
                                   "srt://relay.example.com:9000", "rtmp://origin/live/cam"])
def test_submit_accepts_ordinary_inputs(value: str) -> None:
    assert validate_submission({"scenario": "t", "input": value}).params["input"] == value


# ---- real runs -----------------------------------------------------------------------------------------


@pytest.fixture
def strict(tmp_path: Path, harness: Harness) -> Harness:
    """A runner with the worker's defaults: no input roots, public hosts only."""
    return Harness(harness.paths.work_dir, harness.ffmpeg, harness.encoders, policy=InputPolicy())


@pytest.fixture
def harness(tmp_path: Path, ffmpeg: str, encoder_map: dict[str, dict[str, Any]]) -> Harness:
    return Harness(tmp_path / "work", ffmpeg, encoder_map)


@pytest.fixture(scope="module")
def encoder_map(ffmpeg: str) -> dict[str, dict[str, Any]]:
    from ffrtmp.worker import encoders as encoder_probe

    return {e.name: e.to_dict() for e in encoder_probe.detect(ffmpeg)}


def test_ffmpeg_runs_without_the_workers_secrets(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFRTMP_API_KEY", "ffk_leak_me")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak-me-too")
    monkeypatch.setenv("LANG", "C.UTF-8")
    attempt = make_attempt("job-env", **LONG)
    recorder, thread = harness.start(attempt)
    ffmpeg = eventually(lambda: child_processes("ffmpeg", lambda argv: "job-env" in " ".join(argv)),
                        timeout=30, message="the ffmpeg process")[0]
    environment = ffmpeg.environ()
    attempt.cancel.set()
    finish(thread)
    assert "FFRTMP_API_KEY" not in environment and "AWS_SECRET_ACCESS_KEY" not in environment
    assert not any("leak" in value for value in environment.values())
    assert environment["PATH"] == os.environ["PATH"] and environment["LANG"] == "C.UTF-8"
    assert recorder.finished()["status"] == "canceled"


class _Site(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "/clip.mp4")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, harness: Harness) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving a real clip at /clip.mp4 and a redirect to it at /moved."""
    made = harness.run(make_attempt("job-clip")).finished()
    served = tmp_path / "site"
    served.mkdir()
    (served / "clip.mp4").write_bytes(Path(made.get("partial") or made["output"]).read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: _Site(*a, directory=str(served)))  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_input_is_read_but_a_redirect_is_not_followed(harness: Harness, site: str) -> None:
    direct = harness.run(make_attempt("job-direct", input=f"{site}/clip.mp4")).finished()
    assert direct["status"] == "completed", direct
    moved = harness.run(make_attempt("job-moved", input=f"{site}/moved.mp4")).finished()
    assert moved["status"] == "failed", moved  # a redirect could point at what the worker may not reach


@pytest.fixture(scope="module")
def gst_encoders(gst_launch: str, gst_inspect: str) -> dict[str, dict[str, Any]]:
    from ffrtmp.worker.gst_encoders import detect

    found = {e.name: e.to_dict() for e in detect(gst_inspect, gst_launch)}
    _require("x264enc" if found.get("x264enc", {}).get("available") else None, "x264enc (gstreamer1.0-plugins-ugly)")
    return found


def test_gstreamer_reads_an_http_input_but_follows_no_redirect(tmp_path: Path, site: str,
                                                              gst_encoders: dict[str, dict[str, Any]]) -> None:
    gst = Harness(tmp_path / "gst-work", None, gst_encoders)
    direct = gst.run(make_attempt("job-gst", engine="gstreamer", input=f"{site}/clip.mp4")).finished()
    assert direct["status"] == "completed", direct
    moved = gst.run(make_attempt("job-gst-moved", engine="gstreamer", input=f"{site}/moved.mp4")).finished()
    assert moved["status"] == "failed", moved


def test_the_default_worker_refuses_a_loopback_input_before_starting(strict: Harness, site: str) -> None:
    recorder = strict.run(make_attempt("job-ssrf", input=f"{site}/clip.mp4"))
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.INVALID_INPUT.value)
    assert "started" not in recorder.kinds()


def test_a_refused_port_is_not_reported_to_the_submitter(harness: Harness) -> None:
    recorder = harness.run(make_attempt("job-scan", input="http://127.0.0.1:1/x.mp4"))
    result = recorder.finished()
    assert result["status"] == "failed", result
    assert "refused" not in result["error"].lower() and SUMMARY in result["error"]
    assert not any("Connection refused" in text for text in recorder.texts())


def test_a_job_cannot_write_into_the_generated_source_cache(harness: Harness) -> None:
    assert harness.run(make_attempt("job-first")).finished()["status"] == "completed"
    cached = generated_path(harness.paths.inputs, "160x120", 10, 1.0, False)
    genuine = cached.read_bytes()
    # straight to the worker (as from a master that did not check)
    poison = harness.run(make_attempt("job-poison", params={"output": f"inputs/{cached.name}"})).finished()
    assert cached.read_bytes() == genuine
    written = poison.get("partial") or poison.get("output")
    assert written is None or Path(written).resolve().parent != cached.parent
    if written is None:
        assert poison["failure"] == Failure.INVALID_INPUT.value and "cache of generated sources" in poison["error"]


@pytest.mark.slow
def test_an_rtmp_input_is_read_through_the_allow_lists(harness: Harness, rtmp_server: RtmpServer) -> None:
    """A relay: one attempt pushes to nginx-rtmp, another reads that stream (flv over rtmp,tcp) into a file."""
    url = rtmp_server.url(f"relay-{harness.paths.work_dir.parent.name}")
    pusher = make_attempt("job-push", output=url, **LONG)
    pushed, push_thread = harness.start(pusher)
    eventually(lambda: "started" in pushed.kinds(), timeout=30, message="the push to start")
    relayed = harness.run(make_attempt("job-relay", input=url, output="relay.mp4")).finished()
    pusher.cancel.set()
    finish(push_thread)
    assert relayed["status"] == "completed", relayed
    assert relayed["output"].endswith("relay.mp4") and relayed["metrics"]["output_bytes"] > 0


def test_a_stream_to_a_loopback_server_is_refused_by_default(strict: Harness) -> None:
    recorder = strict.run(make_attempt("job-push", output="rtmp://127.0.0.1:1/live/x"))
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.INVALID_INPUT.value)
    assert result["error"].startswith("output: '127.0.0.1' resolves to a loopback address")
    assert "started" not in recorder.kinds()
