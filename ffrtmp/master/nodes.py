"""What the master knows about each worker while it runs: its connection, capacity and attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import check_name
from ffrtmp.master.scheduler import NodeView

MAX_SLOTS = 256


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
    active: dict[str, int] = field(default_factory=dict)
    """job id → the attempt this node runs (or was sent)."""
    assigned_at: dict[str, float] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def accepting(self) -> bool:
        return self.status == "online" and self.route is not None

    def codecs(self) -> frozenset[str]:
        usable: set[str] = set()
        for name, info in self.encoders.items():
            if isinstance(info, dict) and info.get("available"):
                usable.add(name)
                if isinstance(info.get("codec"), str):
                    usable.add(info["codec"])
        return frozenset(usable)

    def view(self) -> NodeView:
        cpu = self.resources.get("cpu_percent", 0.0)
        return NodeView(name=self.name, slots=self.slots, active=len(self.active), engines=self.engines,
                        labels=self.labels, codecs=self.codecs(),
                        cpu=float(cpu) if isinstance(cpu, int | float) else 0.0, accepting=self.accepting)

    def add(self, job_id: str, attempt: int, now: float) -> None:
        self.active[job_id] = attempt
        self.assigned_at[job_id] = now

    def remove(self, job_id: str) -> None:
        self.active.pop(job_id, None)
        self.assigned_at.pop(job_id, None)
        self.progress.pop(job_id, None)

    def runs(self, job_id: str, attempt: int) -> bool:
        return self.active.get(job_id) == attempt

    def record(self) -> dict[str, Any]:
        """The row the store keeps."""
        return {"name": self.name, "fingerprint": self.fingerprint, "status": self.status,
                "version": self.version, "slots": self.slots, "engines": sorted(self.engines),
                "encoders": self.encoders, "labels": self.labels, "resources": self.resources}

    def live(self) -> dict[str, Any]:
        """What `nodes list` adds to the stored row while the node is known in memory."""
        return {"status": self.status, "running": len(self.active), "jobs": sorted(self.active),
                "resources": self.resources, "last_seen": self.last_seen,
                "progress": {job: p.get("progress") for job, p in self.progress.items()}}


def check_hello(body: dict[str, Any]) -> None:
    """The HELLO fields the protocol schema cannot judge alone."""
    check_name("name", body["name"])
    if not 1 <= body["slots"] <= MAX_SLOTS:
        raise InvalidInput("slots", f"{body['slots']} must be from 1 to {MAX_SLOTS}")
    engines = body["engines"]
    if not engines or not all(isinstance(e, str) and len(e) <= 32 for e in engines):
        raise InvalidInput("engines", "must be a non-empty list of engine names")
    for key in ("encoders", "labels", "resources"):
        if len(str(body.get(key, ""))) > 256 * 1024:
            raise InvalidInput(key, "is too large")
