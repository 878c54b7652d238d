"""The client's side of files across machines (docs/files.md): upload a local input, fetch a job's output.

`jobs submit --input ./clip.mp4` (`upload` auto, the default) hashes and uploads the file, then submits the job
with `input_file` instead of `input`, so no worker needs the client's path; a file the store already holds for
this tenant is not sent again, and a `--from` file uploads each distinct input once. `upload: never` keeps
`input` as a path on the workers (shared storage); `always` fails (exit 2) unless it is a local file.
`fetch` downloads a job's stored output, resuming a partial `DEST.part` and checking its SHA-256.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ffrtmp.errors import FileMismatch, InvalidInput, NotFound
from ffrtmp.files.transfer import Downloaded, FilesPeer, Progress, Uploaded, download, upload
from ffrtmp.jobspec import CLIENT_SIDE, UPLOAD_MODES, validate_submission
from ffrtmp.security import KeyPair


class Client(Protocol):
    """What the file side needs of a `ffrtmp.client.Client` (which offers it)."""

    api_key: str | None
    timeout: float

    @property
    def master(self) -> str: ...

    @property
    def curve(self) -> tuple[bytes | None, KeyPair | None]: ...

    def request(self, op: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any: ...

    def get(self, job_id: str) -> dict[str, Any]: ...

ProgressFor = Callable[[str], Progress | None]
"""Given what moves ("upload clip.mp4"), a progress callback for it (or None: no progress shown)."""


NO_STORE = "this master has no file store (its data channel is off: --files-port 0, or it is older)"


def files_peer(client: Client) -> FilesPeer | None:
    """The data channel of the master the client talks to (its port from `files_info`, the same CURVE keys);
    None when it has none."""
    try:
        info = client.request("files_info")
    except (InvalidInput, NotFound):  # an older master does not know the request
        return None
    port = info.get("port") if isinstance(info, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    server_key, keys = client.curve
    return FilesPeer.beside(client.master, port, server_key, keys)


def need_peer(client: Client) -> FilesPeer:
    peer = files_peer(client)
    if peer is None:
        raise NotFound(NO_STORE)
    return peer


def local_input(job: dict[str, Any]) -> Path | None:
    """The local file a job's `input` names when `upload` says to send it; None to leave `input` as it is."""
    mode = job.get("upload") or "auto"
    if mode not in UPLOAD_MODES:
        raise InvalidInput("upload", f"{mode!r} is not one of {', '.join(UPLOAD_MODES)}")
    given = job.get("input")
    if mode == "never" or given is None or job.get("input_file") is not None:
        return None
    text = str(given)
    path = Path(text).expanduser()
    if "://" not in text and path.is_file():
        return path.resolve()
    if mode == "always":
        raise InvalidInput("input", f"{text!r} is not a file on this machine (--upload always sends a local file; "
                           "--upload never names a path on the workers)")
    return None


@dataclass
class Uploads:
    """The uploads of one submit: each distinct local file once, whatever how many jobs name it."""

    client: Client
    progress_for: ProgressFor = lambda what: None
    done: dict[Path, Uploaded] = field(default_factory=dict)
    _peer: FilesPeer | None = None
    _asked: bool = False

    @property
    def sent(self) -> int:
        return sum(item.sent for item in self.done.values())

    def peer(self) -> FilesPeer | None:
        if not self._asked:
            self._peer, self._asked = files_peer(self.client), True
        return self._peer

    def file(self, path: Path) -> Uploaded:
        if path not in self.done:
            peer = self.peer()
            if peer is None:
                raise NotFound(NO_STORE)
            self.done[path] = upload(peer, path, api_key=self.client.api_key,
                                     progress=self.progress_for(f"upload {path.name}"),
                                     timeout=max(self.client.timeout, 10.0))
        return self.done[path]

    def rewrite(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job as the master gets it: a local input uploaded and named by `input_file`; no `upload`.

        Everything else is checked before a byte is sent (a local path need not be one a worker could take)."""
        path = local_input(job)
        sent = {key: value for key, value in job.items() if key != "upload"}
        if path is not None and job.get("upload", "auto") == "auto" and self.peer() is None:
            path = None  # nowhere to upload to: the path is left for workers that see it (shared storage)
        if path is None:
            validate_submission(sent, output_roots=CLIENT_SIDE)
            return sent
        validate_submission({**sent, "input": None}, output_roots=CLIENT_SIDE)
        stored = self.file(path)
        sent.pop("input")
        sent["input_file"] = {"sha256": stored.sha256, "size": stored.size, "name": stored.name}
        return sent


def stored_output(job: dict[str, Any]) -> dict[str, Any]:
    """The job's stored output (`files.output`), or NotFound (exit 6) when it has none."""
    files = job.get("files") if isinstance(job.get("files"), dict) else None
    output = files.get("output") if files else None
    if not isinstance(output, dict) or not output.get("sha256"):
        raise NotFound(f"job {job.get('id')} has no stored output (status {job.get('status')}: only a completed "
                       "job's file output is stored)")
    return output


def fetch_target(dest: Path | str | None, name: str) -> Path:
    """Where a fetch writes: `dest` itself, or `name` in it when it is a directory (or says it is one with a
    trailing `/`, made here); the directory a file goes into must exist (a typo is not made into folders)."""
    if dest is None:
        return Path(name)
    path = Path(dest)
    if isinstance(dest, str) and dest.endswith(("/", os.sep)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput("output", f"cannot make the directory {dest}: {exc.strerror or exc}") from None
    if path.is_dir():
        return path / name
    if not path.parent.is_dir():
        raise InvalidInput("output", f"{path.parent} is not a directory (end the path with / to have it made)")
    return path


def fetch(client: Client, job_id: str, dest: Path | str | None = None,
          progress_for: ProgressFor = lambda what: None) -> Downloaded:
    """Download a job's stored output to `dest` (a directory, or a string ending in `/`, which is made when
    missing: the output's name in it; default: the output's name here); resumes `DEST.part`; the SHA-256 is
    checked against the job's record."""
    job = client.get(job_id)
    output = stored_output(job)
    name = Path(str(output.get("name") or f"{job['id']}.out")).name
    target = fetch_target(dest, name)
    done = download(need_peer(client), target, job=job["id"], which="output", api_key=client.api_key,
                    progress=progress_for(f"fetch {target.name}"), timeout=max(client.timeout, 10.0))
    if done.sha256 != output["sha256"] or done.size != output.get("size", done.size):
        target.unlink(missing_ok=True)
        raise FileMismatch(f"{target} is not the job's output ({done.sha256}, the job names {output['sha256']})")
    return done
