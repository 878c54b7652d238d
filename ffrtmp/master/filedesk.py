"""The file store's rules, one place for both ways in: the data channel (filechannel.py, ZeroMQ) and the HTTP
API (http_files.py). Who may upload or read, whether a file is held already, whether an upload fits, where its
partial lives, what a reader may read, and what a damaged object costs (docs/files.md).

It has its own store connection, not the loop's, used under a lock that is held for the statements only, never
while bytes move: the data channel's thread and the HTTP API's worker threads share one desk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ffrtmp.errors import (
    Conflict,
    FileMismatch,
    InvalidInput,
    MasterUnreachable,
    NotAuthorized,
    NotFound,
    RateLimited,
    StoreUnavailable,
)
from ffrtmp.files.objects import IncomingObject, ObjectMismatch, ObjectReader, ObjectStore, valid_sha256
from ffrtmp.master.auth import Authority, Principal
from ffrtmp.master.store import ACTIVE, Store
from ffrtmp.master.store.files import FileRef

log = logging.getLogger("ffrtmp.master.files")

UPLOAD_NEEDS = "submit"
"""The permission an upload needs (auth.GRANTS); a download needs `read`."""
COLLECT_BATCH = 200


@dataclass(frozen=True)
class FilesOptions:
    retention: float = 7 * 86400.0
    max_bytes: int | None = None


_NOT_IN_A_NAME = re.compile(r"[\x00-\x1f\x7f/]")
MAX_NAME = 255


def file_name(raw: object) -> str:
    """The name an upload gives its file (what `jobs fetch` writes it as; '' when none): a file name, not a
    path, with no control characters (PostgreSQL's text refuses a NUL), of at most 255 characters. A
    backslash is a file name's character on the master's side (an output `take\\1.mp4` is valid); a client
    on Windows keeps only what follows it, as for any path it is handed."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("name", "must be a string")
    if len(raw) > MAX_NAME:
        raise InvalidInput("name", f"is longer than {MAX_NAME} characters")
    if raw in (".", "..") or _NOT_IN_A_NAME.search(raw):
        raise InvalidInput("name", f"{raw!r} must be a file name: no '/', control characters, '.' or '..'")
    return raw


def upload_key(tenant: str, sha256: str) -> str:
    """Where a tenant's partial upload of `sha256` lives (incoming/): one per tenant and file, so a resume from
    any connection, either protocol, finds it and no tenant ever writes into another's."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16] + "-" + sha256


class FileDesk:
    def __init__(self, objects: ObjectStore, open_store: Callable[[], Store], legacy_key: str | None,
                 options: FilesOptions | None = None) -> None:
        self.objects = objects
        self.options = options or FilesOptions()
        self.rotten: set[str] = set()
        """Files found damaged on reading and removed (a later read says so); forgotten once stored again."""
        self._open_store = open_store
        self._legacy_key = legacy_key
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._authority: Authority | None = None
        self._closed = False

    @contextmanager
    def db(self) -> Iterator[Store]:
        """The desk's store connection (opened on first use), for one statement or transaction."""
        with self._lock:
            if self._closed:  # the master stops: an HTTP request late for it never reopens a connection
                raise MasterUnreachable("the master is stopping; retry on the leader in a moment")
            if self._store is None:
                self._store = self._open_store()
                self._authority = Authority(self._store, self._legacy_key)
            yield self._store

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._store is not None:
                self._store.close()
                self._store = None

    # ---- who is asking ---------------------------------------------------------------------------------

    def client(self, key: object, need: str) -> Principal:
        """A client of the data channel by its API key (the HTTP API's callers are the loop's: client_gate)."""
        with self.db():
            assert self._authority is not None
            principal = self._authority.authenticate(key)
        self.authorize(principal, need)
        return principal

    @staticmethod
    def authorize(principal: Principal, need: str) -> None:
        if not principal.may(need):
            raise NotAuthorized(f"a {principal.role} key may not {'upload' if need == UPLOAD_NEEDS else 'read'} "
                                "files")

    def attempt_of(self, sender: str | None, job_id: object, attempt: object) -> tuple[str, int, str]:
        """(job, attempt, tenant) for a worker naming an attempt it runs now; 409 for another attempt."""
        if not isinstance(job_id, str) or not isinstance(attempt, int):
            raise InvalidInput("attempt", "a worker names the job and attempt (job + attempt)")
        with self.db() as db:
            job = db.get_job(job_id)
            if job is None:
                raise NotFound(f"no job {job_id}")
            if job["status"] not in ACTIVE or job["attempts"] != attempt:
                raise Conflict(f"attempt {attempt} of job {job_id} is not the job's current one (stale attempt)")
            node = db.get_node(job["node"] or "")
        if node is None or (sender is not None and node.get("curve_key") != sender):
            raise NotAuthorized(f"this connection is not the worker running job {job_id}")
        return job_id, attempt, job["tenant"]

    # ---- uploads ---------------------------------------------------------------------------------------

    def held(self, tenant: str, ref: FileRef, job: tuple[str, int] | None = None) -> FileRef | None:
        """When the tenant holds this file already (and the bytes are there), record its use (and the attempt's
        output) and return it as held: nothing needs to be sent. None: it must be uploaded."""
        with self.db() as db:
            row = db.find_file(tenant, ref["sha256"])
        if row is None or row["size"] != ref["size"] or self.objects.size_of(ref["sha256"]) != ref["size"]:
            return None
        held: FileRef = {"sha256": row["sha256"], "size": row["size"], "name": ref["name"] or row["name"]}
        self._record(tenant, held, job)
        return held

    def check_room(self, tenant: str, size: int) -> None:
        """Refuse an upload that would pass the store's cap (507) or the tenant's quota (429), before any byte."""
        cap = self.options.max_bytes
        if cap is not None and self.objects.used_bytes() + size > cap:
            raise StoreUnavailable(f"the file store is full ({self.objects.used_bytes()} of {cap} bytes used; this "
                                   f"file has {size}): nothing was stored; the operator may raise --files-max-bytes")
        with self.db() as db:
            quota = db.bytes_quota(tenant)
            used = db.tenant_file_bytes(tenant) if quota is not None else 0
        if quota is not None and used + size > quota:
            raise RateLimited(f"tenant {tenant!r} may store {quota} bytes and holds {used}; this file has {size} "
                              "(quota: ffrtmp keys quota set TENANT --max-bytes SIZE)")

    def receive(self, tenant: str, ref: FileRef) -> IncomingObject:
        """Start, or resume from what came before, the tenant's upload of `ref` (check_room first)."""
        return self.objects.receive(upload_key(tenant, ref["sha256"]), ref["sha256"], ref["size"])

    def received(self, tenant: str, sha256: str) -> int | None:
        """Bytes of the tenant's partial upload of `sha256` (None: none), for a client that will resume."""
        return self.objects.received(upload_key(tenant, sha256))

    def store(self, tenant: str, ref: FileRef, incoming: IncomingObject, job: tuple[str, int] | None = None) -> None:
        """All bytes came: make the object visible if they hash to its name (else 422, nothing stored), then
        record that the tenant holds it (and that it is the attempt's output)."""
        try:
            incoming.commit()
        except ObjectMismatch as exc:
            raise FileMismatch(f"{exc}: nothing was stored") from None
        self.rotten.discard(ref["sha256"])
        self._record(tenant, ref, job)

    def _record(self, tenant: str, ref: FileRef, job: tuple[str, int] | None) -> None:
        now = time.time()
        with self.db() as db, db.transaction():
            db.put_file(tenant, ref["sha256"], ref["size"], ref["name"], now)
            if job is not None:
                db.link_job_file(job[0], "output", job[1], tenant, ref, now)

    # ---- downloads -------------------------------------------------------------------------------------

    def by_hash(self, tenant: str, sha256: str) -> FileRef:
        """A file the tenant holds; another tenant's does not exist for it (404)."""
        if not valid_sha256(sha256):
            raise InvalidInput("sha256", "must be 64 lowercase hex digits")
        with self.db() as db:
            row = db.find_file(tenant, sha256)
        if row is None:
            raise NotFound(f"no stored file {sha256}")
        return {"sha256": row["sha256"], "size": row["size"], "name": row["name"]}

    def of_job(self, caller: Principal, job_id: str, which: str) -> FileRef:
        """A job's stored input, or output once the job completed with it; other tenants' jobs are 404."""
        if which not in ("input", "output"):
            raise InvalidInput("which", f"{which!r} is neither input nor output")
        with self.db() as db:
            job_id = db.resolve_job_id(job_id, tenant=caller.scope)
            files = db.job_files(job_id)
        found = files["input"] if which == "input" else files["output"]
        if found is None:
            raise NotFound(f"job {job_id} has no stored {which} file")
        return found

    def attempt_input(self, job_id: str) -> FileRef:
        """The input a worker running the job's current attempt may read."""
        with self.db() as db:
            found = db.job_file(job_id, "input", 0)
        if found is None:
            raise NotFound(f"job {job_id} has no stored input file")
        return found

    def open(self, ref: FileRef) -> ObjectReader:
        try:
            return self.objects.open(ref["sha256"])
        except FileNotFoundError:
            if ref["sha256"] in self.rotten:
                raise NotFound(f"file {ref['sha256']} was damaged in the master's store and removed: upload it "
                               "again") from None
            raise NotFound(f"file {ref['sha256']} is no longer stored") from None

    def present(self, ref: FileRef) -> None:
        """404 as `open` says it when the object's bytes are not there (damaged and removed, or collected)."""
        if self.objects.size_of(ref["sha256"]) != ref["size"]:
            self.open(ref).close()  # raises the NotFound that says why (or finds it after all: then it is there)

    def read_whole(self, sha256: str, found: str) -> bool:
        """A reader read the whole object and its bytes hashed to `found`: True when that is its name. Else the
        bad copy goes (one error line), so that uploading the file again stores it again instead of being told
        it is held; the reader's own check fails its transfer."""
        if found == sha256:
            return True
        log.error("the stored file %s no longer hashes to its name (its bytes hash to %s: the disk or the bucket "
                  "changed it): removed from the store; upload it again", sha256, found)
        self.rotten.add(sha256)
        try:
            self.objects.remove(sha256)
        except Exception as exc:  # a bucket's error as much as a disk's: the transfer has ended either way
            log.error("could not remove the damaged file %s: %s", sha256, exc)
        return False

    # ---- retention -------------------------------------------------------------------------------------

    def collect(self, now: float) -> int:
        """Remove files unused for the retention that no job keeps, and partial uploads as old."""
        removed = 0
        with self.db() as db:
            stale = db.stale_files(now - self.options.retention, COLLECT_BATCH)
        for tenant, sha256 in stale:
            with self.db() as db, db.transaction():
                still_held = db.delete_file(tenant, sha256)
            if not still_held and self.objects.remove(sha256):
                removed += 1
        self.objects.drop_incoming(self.options.retention)
        if removed:
            log.info("removed %d stored files unused for %gs", removed, self.options.retention)
        return removed
