"""`ffrtmp jobs …`: submit, fetch, list, show, logs, cancel, retry; sweep (cli/sweep.py)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live

from ffrtmp.cli.common import Connection, console, errors, print_json, with_connection
from ffrtmp.cli.sweep import sweep
from ffrtmp.cli.transferbar import transfer_bars
from ffrtmp.client import TERMINAL, Client, SubmittedIds
from ffrtmp.client_files import Uploads, fetch, fetch_target
from ffrtmp.errors import InvalidInput, JobFailed
from ffrtmp.jobspec import CLIENT_SIDE, UPLOAD_MODES, parse_labels, validate_submission
from ffrtmp.views import job_detail, job_progress, jobs_table

app = typer.Typer(help="Submit and inspect jobs.", no_args_is_help=True, rich_markup_mode=None)
app.command("sweep")(sweep)


MAX_KEY = 150
"""Longest --idempotency-key (the master takes 200 characters, chunk index included)."""


def jobs_key(jobs: list[dict[str, Any]]) -> str:
    """The idempotency key of a `--from` submit: a hash of its jobs (the file with the command line's
    defaults applied), so rerunning the same command after a failure creates only what is missing."""
    canonical = json.dumps(jobs, sort_keys=True, separators=(",", ":")).encode()
    return "from-" + hashlib.sha256(canonical).hexdigest()[:40]


def _read_jobs_file(path: Path, defaults_: dict[str, Any]) -> list[dict[str, Any]]:
    """One JSON object a line; options given on the command line fill fields the lines leave out."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput("from", f"cannot read {path}: {exc}") from None
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"from: line {number}", f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInput(f"from: line {number}", "must be a JSON object")
        job = {**defaults_, **raw}
        try:
            # a local input is checked once uploaded (it need not be a path a worker could take)
            validate_submission({**job, "input": None}, output_roots=CLIENT_SIDE)
        except InvalidInput as exc:
            raise InvalidInput(f"from: line {number}: {exc.field}", exc.problem) from None
        jobs.append(job)
    if not jobs:
        raise InvalidInput("from", f"{path} holds no jobs")
    return jobs


@app.command("submit")
@with_connection(timeout_flag="--connect-timeout")
def submit(
    conn: Connection,
    scenario: str = typer.Option(None, "--scenario", help="A preset from `ffrtmp scenarios`, or any label."),
    bitrate: str = typer.Option(None, "--bitrate", help="e.g. 2000k or 5M."),
    resolution: str = typer.Option(None, "--resolution", help="WIDTHxHEIGHT, e.g. 1280x720."),
    fps: int = typer.Option(None, "--fps"),
    duration: str = typer.Option(None, "--duration", help="Seconds of video (or 90s, 2m)."),
    codec: str = typer.Option(None, "--codec", help="h264, h265, vp9, av1, or an encoder name (h264_nvenc)."),
    preset: str = typer.Option(None, "--preset", help="Encoder preset, e.g. veryfast."),
    engine: str = typer.Option(None, "--engine", help="auto, ffmpeg, gstreamer or null."),
    quality: str = typer.Option(None, "--quality", help="Measure the output against its source: none, basic "
                                "(PSNR + SSIM; the default for file outputs) or vmaf (adds VMAF). Live rtmp:// "
                                "outputs: none."),
    input_: str = typer.Option(None, "--input", help="A file or URL (default: a generated test source). A file "
                               "on this machine is uploaded to the master's file store (see --upload)."),
    upload: str = typer.Option(None, "--upload", help="auto (default: upload --input when it is a local file), "
                               "always (it must be), or never (--input is a path on the workers)."),
    output: str = typer.Option(None, "--output", help="A path in the job's own output directory, an absolute "
                               "path under the master's --output-root, or rtmp://…"),
    queue: str = typer.Option(None, "--queue", help="live, default or batch."),
    priority: str = typer.Option(None, "--priority", help="high, medium or low."),
    max_retries: int = typer.Option(None, "--max-retries", help="Override the master's --max-retries."),
    timeout_: str = typer.Option(None, "--timeout", help="The job's deadline per attempt, e.g. 10m (default: "
                                 "derived from the duration). The connection timeout is --connect-timeout here."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE a worker must offer (repeatable)."),
    from_file: Path = typer.Option(None, "--from", help="Many jobs: a JSONL file, one object a line."),
    wait: bool = typer.Option(False, "--wait", help="Block with a progress bar until the job ends."),
    fetch_output: bool = typer.Option(False, "--fetch", help="With --wait: download the output once completed."),
    fetch_to: str = typer.Option(None, "-o", "--fetch-to", help="With --fetch: where (a file, or a directory: "
                                  "one ending in / is made; default: the output's name here)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    idempotency_key: str = typer.Option(None, "--idempotency-key", help="Rerunning a submit with the same key "
                                        "(within a day, same tenant) creates no job twice. With --from it "
                                        "defaults to a hash of the jobs; give a new key to submit them again."),
) -> None:
    """Submit a job (or many with --from) and print its id."""
    options = {"scenario": scenario, "bitrate": bitrate, "resolution": resolution, "fps": fps,
               "duration": duration, "codec": codec, "preset": preset, "engine": engine, "input": input_,
               "output": output, "queue": queue, "priority": priority, "max_retries": max_retries,
               "timeout": timeout_, "labels": parse_labels(label) or None, "upload": upload, "quality": quality}
    given = {k: v for k, v in options.items() if v is not None}
    if upload is not None and upload not in UPLOAD_MODES:
        raise InvalidInput("upload", f"{upload!r} is not one of {', '.join(UPLOAD_MODES)}")
    if (fetch_output or fetch_to is not None) and not wait:
        raise InvalidInput("fetch", "--fetch and -o need --wait (the output exists once the job completed)")
    if fetch_to is not None:
        fetch_target(fetch_to, "output")  # a -o into no directory is said now, not after the encode
    if from_file is not None:
        jobs = _read_jobs_file(from_file, given)
    else:
        validate_submission({**given, "input": None}, output_roots=CLIENT_SIDE)
        jobs = [given]
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY:
        raise InvalidInput("idempotency-key", f"must be 1 to {MAX_KEY} characters")
    with conn.client() as client:
        jobs = _upload_inputs(client, jobs, quiet=json_output)
        key = idempotency_key or (jobs_key(jobs) if from_file is not None else None)
        ids = client.submit_many(jobs, key=key) if key is not None or len(jobs) > 1 \
            else client.request("submit", {"jobs": jobs})["ids"]
        if isinstance(ids, SubmittedIds) and ids.repeated:
            errors.print(f"note: {ids.repeated} of these {len(ids)} jobs were submitted before with the same "
                         f"key ({key}); no new job was made for them (--idempotency-key: a new key submits "
                         "them again)", soft_wrap=True, highlight=False)
        if not wait:
            if json_output:
                print_json({"ids": ids})
            else:
                for job_id in ids:
                    console.print(job_id, highlight=False)
            return
        finals = [_wait_with_progress(client, job_id, quiet=json_output) for job_id in ids]
    if json_output:
        print_json(finals if len(finals) > 1 else finals[0])
    failed = [job for job in finals if job["status"] != "completed"]
    if failed:
        job = failed[0]
        raise JobFailed(f"job {job['id']} {job['status']}: {job.get('error') or 'no error recorded'}")
    if fetch_output or fetch_to is not None:
        with conn.client() as client, transfer_bars(not json_output) as bars:
            for job in finals:
                _report_fetch(fetch(client, job["id"], fetch_to, bars), quiet=json_output)


def _upload_inputs(client: Client, jobs: list[dict[str, Any]], quiet: bool) -> list[dict[str, Any]]:
    """Upload the local inputs (each distinct file once) and name them by `input_file`; say what was sent."""
    with transfer_bars(not quiet) as bars:
        uploads = Uploads(client, bars)
        sent = [uploads.rewrite(job) for job in jobs]
    for path, done in uploads.done.items():  # on stderr, also with --json: what moved is worth knowing
        state = "already stored, 0 bytes sent" if done.had else f"{done.sent} bytes sent"
        errors.print(f"input {path}: {done.size} bytes, sha256 {done.sha256} ({state})", highlight=False,
                     soft_wrap=True)
    return sent


def _report_fetch(done: Any, quiet: bool) -> None:
    if not quiet:
        errors.print(f"fetched {done.path}: {done.size} bytes, sha256 {done.sha256} verified "
                     f"({done.received} bytes received)", highlight=False, soft_wrap=True)


@app.command("fetch")
@with_connection
def fetch_(
    conn: Connection,
    job_id: str = typer.Argument(..., help="A job id or a unique prefix."),
    output: str = typer.Option(None, "-o", "--output", help="Where (a file, or a directory for the output's own "
                                "name, made when it ends in /; default: its name in the current directory)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON: path, size, sha256, received."),
) -> None:
    """Download a job's stored output (resumes a partial download; its SHA-256 is checked). Exit 6 when the job
    has no stored output."""
    with conn.client() as client, transfer_bars(not json_output) as bars:
        done = fetch(client, job_id, output, bars)
    if json_output:
        print_json({"path": str(done.path), "size": done.size, "sha256": done.sha256, "received": done.received})
        return
    _report_fetch(done, quiet=False)
    console.print(str(done.path), highlight=False)


def _wait_with_progress(client: Client, job_id: str, quiet: bool = False) -> dict[str, Any]:
    if quiet or not console.is_terminal:
        job = client.wait(job_id)
        if not quiet:
            console.print(f"{job_id} {job['status']}", highlight=False)
        return job
    progress = job_progress()
    task = progress.add_task(f"{job_id[:8]} pending", total=1.0, detail="")

    def update(job: dict[str, Any]) -> None:
        metrics = job.get("metrics") or {}
        detail = " ".join(f"{k}={metrics[k]}" for k in ("fps", "speed") if metrics.get(k) is not None)
        where = f" on {job['node']}" if job.get("node") else ""
        note = f" ({job['reason']})" if job.get("reason") else ""
        done = 1.0 if job["status"] == "completed" else (job.get("progress") or 0.0)
        progress.update(task, completed=done, description=f"{job_id[:8]} {job['status']}{where}{note}", detail=detail)

    with progress:
        job = client.wait(job_id, on_update=update)
    console.print(f"{job_id} [bold]{job['status']}[/]", highlight=False)
    return job


@app.command("list")
@with_connection
def list_(
    conn: Connection,
    status: str = typer.Option(None, "--status", help="pending, assigned, running, completed, failed, canceled."),
    queue: str = typer.Option(None, "--queue"),
    node: str = typer.Option(None, "--node"),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000,
                              help="How many (fetched from the master in pages of at most 1,000)."),
    watch: bool = typer.Option(False, "--watch", help="A live table, refreshed until Ctrl-C."),
    json_output: bool = typer.Option(False, "--json"),
    every: bool = typer.Option(False, "--all", help="Every job, whatever --limit says (page by page)."),
) -> None:
    """List jobs, newest first."""
    with conn.client() as client:
        def fetch() -> list[dict[str, Any]]:
            return client.list(status=status, queue=queue, node=node, limit=limit, all=every)

        if json_output:
            print_json(fetch())
            return
        if not watch:
            console.print(jobs_table(fetch(), width=console.width))
            return
        with Live(jobs_table(fetch(), width=console.width), console=console, refresh_per_second=4) as live:
            try:
                while True:
                    time.sleep(0.5)
                    live.update(jobs_table(fetch(), title=time.strftime("%H:%M:%S"), width=console.width))
            except KeyboardInterrupt:
                pass


@app.command("show")
@with_connection
def show(
    conn: Connection,
    job_id: str = typer.Argument(..., help="A job id or a unique prefix."),
    json_output: bool = typer.Option(False, "--json"),
    follow: bool = typer.Option(False, "--follow", "-f", help="A progress bar until the job ends, then the job."),
) -> None:
    """Show one job: parameters, state history, metrics, and the last log lines when it failed."""
    with conn.client() as client:
        job = client.get(job_id)
        if follow:
            job = _wait_with_progress(client, job["id"], quiet=json_output)
        if json_output:
            print_json(job)
            return
        tail = client.logs(job["id"], tail=10)["lines"] if job["status"] == "failed" else None
    console.print(job_detail(job, tail))
    if follow and job["status"] != "completed":
        raise JobFailed(f"job {job['id']} {job['status']}: {job.get('error') or 'no error recorded'}")


@app.command("logs")
@with_connection
def logs(
    conn: Connection,
    job_id: str = typer.Argument(..., help="A job id or a unique prefix."),
    tail: int = typer.Option(None, "--tail", min=0, help="Only the last N lines."),
    attempt: str = typer.Option(None, "--attempt", help="An attempt number, or `all` (default: the latest)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
) -> None:
    """Print the lines FFmpeg wrote for a job."""
    attempt_arg: int | str | None = None
    if attempt is not None:
        if attempt != "all" and not attempt.isdigit():
            raise InvalidInput("attempt", f"{attempt!r} must be a number or 'all'")
        attempt_arg = attempt if attempt == "all" else int(attempt)
    with conn.client() as client:
        if not follow:
            result = client.logs(job_id, attempt=attempt_arg, tail=tail)
            _print_lines(result["lines"], attempt_arg == "all", None)
            if result.get("dropped"):
                errors.print(f"({result['dropped']} lines were dropped: the job's log reached its size cap)")
            return
        stream = client.follow_logs(job_id, attempt=attempt_arg, tail=tail)
        last: int | None = None
        for line in stream:
            # Following the latest attempt also shows the retries after it, each under a header.
            headers = attempt_arg == "all" or (attempt_arg is None and last is not None)
            last = _print_lines([line], headers, last)
    job = stream.job or {}
    if job.get("status") != "completed":
        raise JobFailed(f"job {job.get('id', job_id)} {job.get('status')}: {job.get('error') or 'no error recorded'}")


def _print_lines(lines: list[dict[str, Any]], headers: bool, last_attempt: int | None) -> int | None:
    """Write lines as they are; with `headers`, a `==> attempt N <==` line where the attempt changes."""
    import sys

    for line in lines:
        if headers and line["attempt"] != last_attempt:
            sys.stdout.write(f"==> attempt {line['attempt']} <==\n")
        last_attempt = line["attempt"]
        sys.stdout.write(line["line"] + "\n")
    sys.stdout.flush()
    return last_attempt


@app.command("cancel")
@with_connection
def cancel(conn: Connection, job_id: str = typer.Argument(..., help="A job id or a unique prefix.")) -> None:
    """Cancel a job; a running FFmpeg process is stopped on its worker."""
    with conn.client() as client:
        result = client.cancel(job_id)
    message = "canceled" if result["changed"] else f"already {result['status']}"
    console.print(f"{result['id']} {message}", highlight=False)


@app.command("retry")
@with_connection
def retry(conn: Connection, job_id: str = typer.Argument(..., help="A job id or a unique prefix.")) -> None:
    """Put a failed or canceled job back in its queue."""
    with conn.client() as client:
        result = client.retry(job_id)
    console.print(f"{result['id']} pending again", highlight=False)


def done_status(job: dict[str, Any]) -> bool:
    return job["status"] in TERMINAL
