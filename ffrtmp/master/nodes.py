"""What the master knows about each worker while it runs: its connection, capacity and attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import check_name
from ffrtmp.master.scheduler import NodeView
from ffrtmp.master.shared_storage import check_sees
from ffrtmp.protocol import HelloBody

MAX_SLOTS = 256


PROGRESS_KEYS = ("frames", "out_time", "quality_frames")
"""What counts as progress for stall detection: more frames or more output time, or more frames compared by
the quality pass after the encode (`--quality`)."""


@dataclass
class AttemptState:
    """One attempt a node runs (or was sent), as the master tracks it between heartbeats."""

    attempt: int
    assigned_at: float
    """Wall time (stored and shown); intervals use `assigned_mono`."""
    queue: str = "default"
    deadline: float | None = None
    """When the attempt times out (monotonic: the job's timeout after assignment); None when unknown."""
    progress: dict[str, Any] = field(default_factory=dict)
    progress_at: float = 0.0
    """When frames or output time last advanced (monotonic, stall detection); starts at assignment."""
    assigned_mono: float = 0.0
    """The master's monotonic clock at assignment: a wall-clock step moves no deadline (F2/F8)."""
    tenant: str = ""
    stopping: bool = False
    """Failed by the master (stalled, timed out) but still holding a slot until the worker confirms."""
    timeout: float | None = None
    queued: bool = False
    """Prefetched: its worker holds it, not started, until a slot frees (as its heartbeats say)."""
    queued_since: float | None = None
    """The monotonic time a heartbeat first said it was held unstarted."""
    recalled: bool = False
    """The master asked its worker to hand it back for a node with a free slot (recall.py)."""
    unfit: frozenset[str] = frozenset()
    unfit_until: float = 0.0
    """The idle nodes it fitted none of at recall's last look, and until when (monotonic) that look holds."""

    def hold(self, mono: float) -> None:
        """Its worker holds it unstarted: no stall, and no timeout, counts until it starts."""
        if not self.queued:
            self.queued_since = mono
        self.queued = True
        self.begin(mono)

    def begin(self, mono: float) -> None:
        """It starts (or is still held) now: its stall and timeout clocks count from here."""
        self.progress_at = max(self.progress_at, mono)
        if self.timeout:
            self.deadline = max(self.deadline or mono, mono + self.timeout)

    def advance(self, snapshot: dict[str, Any], now: float) -> bool:
        """Record a heartbeat's figures (`now`: the monotonic clock); True when they differ from the last ones."""
        if snapshot == self.progress:
            return False
        if any(_number(snapshot.get(k)) > _number(self.progress.get(k)) for k in PROGRESS_KEYS):
            self.progress_at = now
        self.progress = snapshot
        return True


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1.0


@dataclass
class NodeSession:
    name: str
    fingerprint: str
    route: bytes | None
    slots: int
    engines: frozenset[str]
    version: str = ""
    encoders: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    status: str = "online"
    last_seen: float = 0.0
    """Wall time of its last message (stored and shown); node expiry uses `heard_at`."""
    heard_at: float = 0.0
    """The master's monotonic clock at its last message."""
    attempts: dict[str, AttemptState] = field(default_factory=dict)
    """job id → the attempt this node runs. Every entry holds a slot, `stopping` ones included."""
    curve_key: str | None = None
    """The CURVE public key this node connected with (its identity on the wire)."""
    key: str | None = None
    """The id of the API key it joined with ('-' on an open master): checked on each message, bound to its name."""
    serves: frozenset[str] | None = None
    """The tenants whose jobs its key lets it run; None: all."""
    prefetch: int = 0
    """Jobs its worker holds beyond its slots (HELLO), so the next starts when one ends: placement fills them
    after every free slot; `attempts` counts them like the running ones."""
    sees: tuple[str, ...] | None = None
    """The paths under which its worker reads shared-storage inputs (HELLO); None: it did not say."""
    quality: frozenset[str] = frozenset()
    """The quality metrics its worker can measure (HELLO): a `--quality vmaf` job needs "vmaf"."""
    recalls: bool = False
    """Its worker hands back prefetched attempts it has not started when asked (HELLO `recall`)."""
    _codecs: tuple[dict[str, Any], dict[str, frozenset[str]]] | None = field(default=None, repr=False, compare=False)
    """`codecs()` and the encoder map it was worked out from."""

    @property
    def accepting(self) -> bool:
        return self.status == "online" and self.route is not None

    @property
    def running(self) -> dict[str, int]:
        """job id → attempt number, for the attempts the master still counts as live (not stopping)."""
        return {job: state.attempt for job, state in self.attempts.items() if not state.stopping}

    def codecs(self) -> dict[str, frozenset[str]]:
        """engine → codecs and encoder names with a usable encoder (entries without an engine are FFmpeg's).

        Worked out once per encoder map (it comes with HELLO): placement asks for it for every node on every
        dispatch pass, and a detected FFmpeg has ~30 encoders."""
        cached = self._codecs
        if cached is not None and cached[0] is self.encoders:
            return cached[1]
        usable: dict[str, set[str]] = {}
        for name, info in self.encoders.items():
            if isinstance(info, dict) and info.get("available"):
                engine = info.get("engine")
                names = usable.setdefault(engine if isinstance(engine, str) else "ffmpeg", set())
                names.add(name)
                if isinstance(info.get("codec"), str):
                    names.add(info["codec"])
        found = {engine: frozenset(names) for engine, names in usable.items()}
        self._codecs = (self.encoders, found)
        return found

    def view(self) -> NodeView:
        cpu = self.resources.get("cpu_percent", 0.0)
        return NodeView(name=self.name, slots=self.slots, active=len(self.attempts), engines=self.engines,
                        labels=self.labels, codecs=self.codecs(),
                        cpu=float(cpu) if isinstance(cpu, int | float) else 0.0, accepting=self.accepting,
                        tenants=self.serves, prefetch=self.prefetch, sees=self.sees, quality=self.quality)

    def add(self, job_id: str, attempt: int, now: float, queue: str = "default",
            timeout: float | None = None, tenant: str = "", mono: float | None = None) -> AttemptState:
        """`now` is wall time, `mono` the monotonic clock (deadlines); `mono` defaults to `now`."""
        mono = now if mono is None else mono
        state = AttemptState(attempt=attempt, assigned_at=now, queue=queue, tenant=tenant, assigned_mono=mono,
                             deadline=mono + timeout if timeout else None, progress_at=mono, timeout=timeout)
        self.attempts[job_id] = state
        return state

    def remove(self, job_id: str) -> None:
        self.attempts.pop(job_id, None)

    def runs(self, job_id: str, attempt: int) -> bool:
        """True when `attempt` is the live attempt of `job_id` on this node (fencing)."""
        state = self.attempts.get(job_id)
        return state is not None and state.attempt == attempt and not state.stopping

    def record(self) -> dict[str, Any]:
        """The row the store keeps."""
        return {"name": self.name, "fingerprint": self.fingerprint, "status": self.status,
                "version": self.version, "slots": self.slots, "engines": sorted(self.engines),
                "encoders": self.encoders, "labels": self.labels, "resources": self.resources,
                "curve_key": self.curve_key, "api_key": self.key}

    @property
    def busy(self) -> int:
        """Slots in use: its worker runs at most `slots` of its attempts, the rest wait prefetched."""
        return min(len(self.attempts), self.slots)

    @property
    def queued(self) -> int:
        """Attempts its worker holds prefetched, beyond its slots."""
        return len(self.attempts) - self.busy

    def live(self) -> dict[str, Any]:
        """What `nodes list` adds to the stored row while the node is known in memory."""
        return {"status": self.status, "running": self.busy, "queued": self.queued, "prefetch": self.prefetch,
                "jobs": sorted(self.running),
                "resources": self.resources, "last_seen": self.last_seen,
                "progress": {job: state.progress.get("progress") for job, state in self.attempts.items()}}


def check_hello(body: HelloBody) -> None:
    """The HELLO fields the protocol schema cannot judge alone."""
    check_name("name", body["name"])
    if not 1 <= body["slots"] <= MAX_SLOTS:
        raise InvalidInput("slots", f"{body['slots']} must be from 1 to {MAX_SLOTS}")
    if not 0 <= (prefetch := body.get("prefetch", 0)) <= MAX_SLOTS:
        raise InvalidInput("prefetch", f"{prefetch} must be from 0 to {MAX_SLOTS}")
    check_sees(body.get("sees"))
    engines = body["engines"]
    if not engines or not all(isinstance(e, str) and len(e) <= 32 for e in engines):
        raise InvalidInput("engines", "must be a non-empty list of engine names")
    for key, value in (("encoders", body.get("encoders")), ("labels", body.get("labels")),
                       ("resources", body.get("resources"))):
        if len(str(value or "")) > 256 * 1024:
            raise InvalidInput(key, "is too large")
