"""Pure placement: which pending job goes to which node with a free slot.

Jobs come in dispatch order (weight, then FIFO). A node fits a job when it offers the job's engine, has a
usable encoder for the job's codec in that engine (for `auto`, in FFmpeg or GStreamer), carries the
job's labels and can see its shared-storage input (shared_storage.py). A job that no node can run never
blocks the ones behind it: it is skipped with a reason the user sees in `jobs show`. Among the nodes that
fit, a node that already failed this job is avoided while others are free, then the least loaded wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ffrtmp.jobspec import GROUP_LABEL
from ffrtmp.master.shared_storage import SIGHT, sight_problem

ENCODING_ENGINES = ("ffmpeg", "gstreamer")


@dataclass
class NodeView:
    name: str
    slots: int
    active: int
    engines: frozenset[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    codecs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """engine → the codecs (h264, …) and encoder names (libx264, x264enc, …) it has a usable encoder for."""
    cpu: float = 0.0
    accepting: bool = True
    tenants: frozenset[str] | None = None
    """The tenants whose jobs this node's worker key lets it run; None: all."""
    prefetch: int = 0
    """Jobs its worker holds beyond its slots, started the moment a slot frees."""
    sees: tuple[str, ...] | None = None
    """Where its worker reads shared-storage inputs (shared_storage.py); None: anywhere (it did not say)."""
    quality: frozenset[str] = frozenset()
    """The quality metrics its worker can measure ("psnr", "ssim", "vmaf")."""

    @property
    def free(self) -> int:
        """Jobs it can take now: free slots, then room in its prefetch queue."""
        return self.slots + self.prefetch - self.active if self.accepting else 0


def engine_fits(engine: str, node: NodeView) -> bool:
    if engine == "auto":
        return any(e in node.engines for e in ENCODING_ENGINES)
    return engine in node.engines


def encoder_fits(codec: str, engine: str, node: NodeView) -> bool:
    """True when one of the engines `engine` may run on has a usable encoder for `codec` on `node`."""
    engines = ENCODING_ENGINES if engine == "auto" else (engine,)
    return any(e in node.engines and codec in node.codecs.get(e, ()) for e in engines)


QUALITY_METRICS = ("psnr", "ssim", "vmaf")
NEEDS_METRIC = {"vmaf": "vmaf"}
"""`--quality` modes that only some workers can serve, and the metric they need (`basic`: any FFmpeg has
psnr and ssim, and a worker without FFmpeg runs no job that could be measured)."""


def quality_metrics(reported: Any) -> frozenset[str]:
    """The known metric names in what a worker's HELLO says (anything else in it is ignored)."""
    return frozenset(m for m in reported if m in QUALITY_METRICS) if isinstance(reported, list) else frozenset()


def quality_missing(job: Mapping[str, Any], node: NodeView) -> str | None:
    """What `node` lacks to measure the job's `--quality`, or None."""
    mode = job.get("params", {}).get("quality")
    needed = NEEDS_METRIC.get(mode) if isinstance(mode, str) else None
    if needed is None or needed in node.quality:
        return None
    return f"lib{needed} for --quality {mode}"


def why_not(job: Mapping[str, Any], node: NodeView) -> str | None:
    """None when `node` could run `job` (free slots aside), else what is missing."""
    engine = job["engine"]
    # A requirement group (dispatch's lanes) has no tenant: its worker-key scope is checked per job.
    if node.tenants is not None and "tenant" in job and job["tenant"] not in node.tenants:
        return f"a worker key for tenant {job['tenant']}"
    if not engine_fits(engine, node):
        return f"engine {engine}"
    for key, value in job.get("labels", {}).items():
        if key != GROUP_LABEL and node.labels.get(key) != value:
            return f"label {key}={value}"
    if engine != "null":
        codec = job.get("params", {}).get("codec")
        if codec and not encoder_fits(codec, engine, node):
            return f"a usable {codec} encoder" + ("" if engine == "auto" else f" for {engine}")
        lacking = quality_missing(job, node)
        if lacking is not None:
            return lacking
    return sight_problem(job, node.sees)


def wait_reason(job: Mapping[str, Any], nodes: Iterable[NodeView]) -> str:
    """Why `job` is still pending, in words a user can act on."""
    nodes = list(nodes)
    if not nodes:
        return "no worker is connected"
    missing = [why_not(job, node) for node in nodes]
    if any(m is None for m in missing):
        return "waiting for a free slot"
    lacks = {m for m in missing if m}
    sight = sorted(m for m in lacks if m.startswith(SIGHT))  # "can see /x (...)" reads without "has"
    rest = sorted(lacks - set(sight))
    return "no connected worker " + " / ".join((["has " + " / ".join(rest)] if rest else []) + sight)


def place(jobs: Iterable[Mapping[str, Any]], nodes: list[NodeView]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Assignments `[(job_id, node_name)]` in dispatch order, and the wait reason of each job left over."""
    assignments: list[tuple[str, str]] = []
    reasons: dict[str, str] = {}
    for job in jobs:
        if not any(node.free > 0 for node in nodes):
            break
        fitting = [n for n in nodes if n.free > 0 and why_not(job, n) is None]
        if not fitting:
            reasons[job["id"]] = wait_reason(job, nodes)
            continue
        avoid = set(job.get("avoid", ()))
        # A free slot anywhere beats a prefetch queue: a job is queued behind others only when it must wait anyway.
        best = min(fitting, key=lambda n: (n.active >= n.slots, n.name in avoid, n.active / n.slots, n.cpu, n.name))
        best.active += 1
        assignments.append((job["id"], best.name))
    return assignments, reasons
