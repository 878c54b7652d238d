#!/usr/bin/env python3
"""Chaos: jobs keep flowing while workers and the master are killed, frozen, cut off, clock-stepped, disk-starved.

N jobs (default 500; every 2nd a tiny real FFmpeg transcode, the rest `null`) on 3 default workers (2 slots).
Every --interval seconds the next fault of the enabled ones (`--faults`, comma list, default all):
  kill       SIGKILL a random worker and restart it; every 2nd time the master instead
  partition  cut a worker off the master for --hold seconds (a blackhole route inside its network namespace;
             workers chaos-2 and chaos-3 run in namespaces the run creates; needs root)
  stop       SIGSTOP a random worker, or every 2nd time the master, for --hold seconds, then SIGCONT
  clock      step the master's wall clock by -300 s (then +300 s) for --hold seconds, and back (clockwrap.py
             runs the master: it adds the offset in a file to the master's time.time())
  disk       fill the master's data dir (its own tmpfs; needs root) for --hold seconds, then free it; a submit
             meanwhile must be refused as "store full", and accepted again soon after
At the end one JSON line: lost, completed_twice, outputs_missing (every completed job's file must exist and
decode), log_gaps_unmarked (a missing log seq with no marker line), encoders_together_max_s (two attempts of a
job encoding at once, watched in /proc; goal: at most the node timeout), master_exits (the master exiting on
its own; must be 0), and how long after a worker's death its jobs were dispatched again.

    sudo python scripts/bench/chaos.py [--jobs 500] [--node-timeout 10s] [--interval 3] [--faults kill,stop]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults import ClockStep, EncoderWatch, FullDisk, Network, can_manage_namespaces  # noqa: E402

from ffrtmp.client import TERMINAL, retry_after  # noqa: E402
from ffrtmp.errors import FfrtmpError, MasterUnreachable, RateLimited, StoreUnavailable  # noqa: E402
from ffrtmp.local import LocalCluster  # noqa: E402
from ffrtmp.units import parse_duration  # noqa: E402

WORKERS = ["chaos-1", "chaos-2", "chaos-3"]
NAMESPACED = {"chaos-2": 0, "chaos-3": 1}
"""Workers run inside a network namespace when partitions are on (by namespace index)."""
FAULTS = ("kill", "partition", "stop", "clock", "disk")
CLOCK_STEPS = (-300.0, 300.0)
"""Each clock fault steps to one of these, holds, and steps back: both directions of a 300 s step each time."""
CLOCKWRAP = Path(__file__).resolve().parent / "clockwrap.py"


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def jobs_for(count: int) -> list[dict[str, Any]]:
    real = {"scenario": "chaos-real", "engine": "ffmpeg", "resolution": "160x120", "fps": 30, "duration": 2,
            "codec": "h264", "bitrate": "300k"}
    null = {"scenario": "chaos-null", "engine": "null"}
    return [real if i % 2 == 0 else null for i in range(count)]


class ChaosCluster(LocalCluster):
    """A LocalCluster whose master runs under clockwrap.py and whose namespaced workers run inside `ip netns`."""

    def __init__(self, root: Path, prefixes: dict[str, list[str]], clock: ClockStep | None, **kwargs: Any) -> None:
        env = {"FFRTMP_CHAOS_CLOCK_FILE": str(clock.path)} if clock else {}
        super().__init__(root, env=env, **kwargs)
        self.prefixes = prefixes
        self.clock = clock

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        program = [str(CLOCKWRAP)] if name == "master" and self.clock else ["-m", "ffrtmp"]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        try:
            return subprocess.Popen([*self.prefixes.get(name, []), sys.executable, *program, *args], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=self.root)
        finally:
            log.close()


class Chaos:
    def __init__(self, cluster: ChaosCluster, faults: list[str], interval: float, hold: float, rng: random.Random,
                 network: Network | None, clock: ClockStep | None, disk: FullDisk | None) -> None:
        self.cluster = cluster
        self.faults = faults
        self.interval = interval
        self.hold = hold
        self.rng = rng
        self.network = network
        self.clock = clock
        self.disk = disk
        self.stop = threading.Event()
        self.counts = dict.fromkeys(["worker_kills", "master_kills", "partitions", "worker_stops", "master_stops",
                                     "clock_steps", "disk_fills"], 0)
        self.worker_deaths: list[tuple[str, float]] = []
        self.disturbances: list[float] = []
        """When the master restarted or its clock stepped: redispatch delays across these are not comparable."""
        self.master_exits: list[str] = []
        self.errors: list[str] = []
        self.turns = dict.fromkeys(FAULTS, 0)
        self.rounds = 0
        self.disk_refusals = 0
        self.probes = 0
        """Probe jobs submitted (they run too: the end waits for them as well)."""
        self.disk_recoveries: list[float | None] = []
        self.timeline: list[tuple[float, str, int]] = []

    def run(self) -> None:
        while not self.wait(self.interval):
            fault = self.faults[self.rounds % len(self.faults)]
            self.rounds += 1
            turn = self.turns[fault]
            self.turns[fault] += 1
            self.timeline.append((round(time.monotonic(), 1), fault, turn))
            try:
                self.inject(fault, turn)
            except (OSError, subprocess.SubprocessError, FfrtmpError) as exc:
                self.errors.append(f"{fault}: {exc}")
        if self.clock is not None and self.clock.offset:
            self.clock.set(0.0)
            self.disturbances.append(time.time())

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`, checking every half second that the master has not exited on its own."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stop.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                return True
            self.check_master()
        return self.stop.is_set()

    def check_master(self) -> None:
        master = self.cluster.master
        if master is not None and master.poll() is not None:
            self.master_exits.append(f"exit {master.returncode}: {self.cluster.log_tail('master', 5)}")
            self.restart_master()

    def restart_master(self) -> None:
        self.disturbances.append(time.time())
        self.cluster.start_master(port=self.cluster.port)

    def inject(self, fault: str, turn: int) -> None:
        if fault == "kill":
            self.kill_master() if turn % 2 == 1 else self.kill_worker(self.rng.choice(WORKERS))
        elif fault == "partition" and self.network is not None:
            name = self.rng.choice(sorted(NAMESPACED))
            self.network.partition(NAMESPACED[name])
            self.counts["partitions"] += 1
            try:
                self.wait(self.hold)
            finally:
                self.network.heal(NAMESPACED[name])
        elif fault == "stop":
            master = turn % 2 == 1
            proc = self.cluster.master if master else self.cluster.workers[self.rng.choice(WORKERS)]
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)
            self.counts["master_stops" if master else "worker_stops"] += 1
            try:
                self.stop.wait(self.hold)  # not self.wait: a stopped master is not an exited one
            finally:
                proc.send_signal(signal.SIGCONT)
        elif fault == "clock" and self.clock is not None:
            self.step_clock(CLOCK_STEPS[turn % len(CLOCK_STEPS)])
            try:
                self.wait(self.hold)
            finally:
                self.step_clock(0.0)
        elif fault == "disk" and self.disk is not None:
            self.disk.fill()
            self.counts["disk_fills"] += 1
            try:
                self.disk_refusals += self.submit_refused(self.hold)
            finally:
                self.disk.release()
            self.disk_recoveries.append(self.seconds_until_submit_works())

    def step_clock(self, offset: float) -> None:
        assert self.clock is not None
        self.clock.set(offset)
        self.disturbances.append(time.time())
        self.counts["clock_steps"] += 1

    def probe(self) -> None:
        with self.cluster.client(timeout=5) as client:
            client.submit("chaos-probe", engine="null")
        self.probes += 1

    def submit_refused(self, seconds: float) -> bool:
        """Whether the master refused a submit as "store full" while the disk was full (it must: the fault bit)."""
        deadline, refused = time.monotonic() + seconds, False
        while not self.wait(0.5) and time.monotonic() < deadline:
            try:
                self.probe()
            except StoreUnavailable:
                refused = True
            except FfrtmpError:
                pass
        return refused

    def seconds_until_submit_works(self, limit: float = 120.0) -> float | None:
        """After the disk is freed: how long until a submit is accepted again (the master recovers by itself)."""
        freed = time.monotonic()
        while time.monotonic() - freed < limit:
            try:
                self.probe()
                return round(time.monotonic() - freed, 2)
            except FfrtmpError:
                self.wait(0.2)
        return None

    def kill_worker(self, name: str) -> None:
        proc = self.cluster.workers[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.worker_deaths.append((name, time.time()))
        self.counts["worker_kills"] += 1
        time.sleep(1.0)
        self.cluster.start_worker(name, slots=2)

    def kill_master(self) -> None:
        assert self.cluster.master is not None
        self.cluster.master.send_signal(signal.SIGKILL)
        self.cluster.master.wait()
        self.counts["master_kills"] += 1
        time.sleep(0.5)
        self.restart_master()

    def resume_all(self) -> None:
        """SIGCONT everything (a stop left mid-way by an error would keep a process from exiting)."""
        for proc in [*self.cluster.workers.values(), *([self.cluster.master] if self.cluster.master else [])]:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)


def redispatch_delays(jobs: list[dict[str, Any]], deaths: list[tuple[str, float]],
                      disturbances: list[float]) -> tuple[list[float], int]:
    """For each attempt lost with a killed worker: its death → the job's next assignment.

    Deaths with a master restart or a clock step in between are counted apart: a restarted master gives every
    node the node timeout from its own start, by design, and a stepped clock shifts the stored instants.
    """
    delays, overlapped = [], 0
    for job in jobs:
        history = job["history"]
        for index, event in enumerate(history):
            if event["status"] != "pending" or not (event.get("reason") or "").startswith("worker_lost"):
                continue
            lost_at = parse_time(event["at"])
            died = [t for name, t in deaths if name == event.get("node") and t <= lost_at]
            following = next((e for e in history[index + 1:] if e["status"] == "assigned"), None)
            if died and following is not None:
                death, redispatched = max(died), parse_time(following["at"])
                if any(death - 1 <= moment <= redispatched + 1 for moment in disturbances):
                    overlapped += 1
                else:
                    delays.append(redispatched - death)
    return delays, overlapped


def decodes(path: Path) -> bool:
    """True when FFmpeg reads the whole file without an error."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, timeout=60)
    return proc.returncode == 0 and not proc.stderr.strip()


def outputs_missing(jobs: list[dict[str, Any]]) -> int:
    """Completed jobs whose file output is absent, empty or does not decode (must be 0)."""
    paths = [Path(job["output"]) for job in jobs if job["status"] == "completed" and job["output"]]

    def bad(path: Path) -> bool:
        return not path.is_file() or path.stat().st_size == 0 or not decodes(path)

    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(bad, paths))


def is_marker(line: dict[str, Any]) -> bool:
    return str(line.get("line", "")).startswith("[ffrtmp:")


def unmarked_gaps(lines: list[dict[str, Any]]) -> int:
    """Gaps in each attempt's log seqs (1, 2, …) not followed by a marker line; a truncation marker ends the log."""
    gaps = 0
    by_attempt: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_attempt.setdefault(int(line["attempt"]), []).append(line)
    for attempt_lines in by_attempt.values():
        expected = 1
        for line in sorted(attempt_lines, key=lambda item: int(item["seq"])):
            seq = int(line["seq"])
            if seq > expected and not is_marker(line):
                gaps += 1
            expected = max(expected, seq + 1)
            if is_marker(line) and "truncated" in str(line.get("line")):
                break
    return gaps


def patient(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, waiting out the master's rate limit (500 jobs' logs in a row trip it, rightly)."""
    while True:
        try:
            return call(*args, **kwargs)
        except RateLimited as exc:
            time.sleep(retry_after(str(exc), 0.5))


def log_gaps(client_for: Callable[[], Any], jobs: list[dict[str, Any]]) -> tuple[int, int]:
    """(unmarked gaps, jobs with a gap) over every job's stored log, all attempts."""
    total = jobs_with = 0
    with client_for() as client:
        for job in jobs:
            found = unmarked_gaps(patient(client.logs, job["id"], attempt="all")["lines"])
            total += found
            jobs_with += found > 0
    return total, jobs_with


def wait_until_done(cluster: ChaosCluster, chaos: Chaos, count: int, cycles: int, seconds: float) -> None:
    """Until every job has ended and every enabled fault has struck `cycles` times (or `seconds` passed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if chaos.rounds <= len(chaos.faults) * cycles:
            time.sleep(0.5)
            continue
        try:
            with cluster.client(timeout=5) as client:
                stats = client.stats()["jobs"]
        except (MasterUnreachable, FfrtmpError):
            time.sleep(0.5)
            continue
        if stats["completed"] + stats["failed"] + stats["canceled"] >= count + chaos.probes:
            return
        time.sleep(0.5)


def parse_faults(value: str) -> list[str]:
    faults = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    return faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--node-timeout", default="10s")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--hold", type=float, default=None,
                        help="seconds a partition, stop or full disk lasts (default 1.5 x the node timeout)")
    parser.add_argument("--faults", type=parse_faults, default=list(FAULTS),
                        help=f"comma list of {', '.join(FAULTS)} (default all)")
    parser.add_argument("--disk-mib", type=int, default=64, help="size of the master's tmpfs (disk fault)")
    parser.add_argument("--deadline", type=float, default=900, help="give up waiting for the jobs after this")
    parser.add_argument("--min-cycles", type=int, default=2,
                        help="run every fault at least this often, even when the jobs end sooner (2: the master "
                             "is killed and stopped too, and the clock steps both ways)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    node_timeout = parse_duration(args.node_timeout)
    hold = args.hold if args.hold is not None else 1.5 * node_timeout
    faults: list[str] = args.faults
    if ("partition" in faults or "disk" in faults) and (why := can_manage_namespaces()):
        parser.error(f"{why}; run as root or leave out partition and disk (--faults)")
    # Cleanup is LIFO: processes stop first, then the tmpfs is unmounted and the namespaces deleted.
    with contextlib.ExitStack() as stack:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup runs on SIGTERM too
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ffrtmp-chaos-")))
        network = stack.enter_context(Network(len(NAMESPACED))) if "partition" in faults else None
        disk = stack.enter_context(FullDisk(root / "master", args.disk_mib)) if "disk" in faults else None
        clock = ClockStep(root / "clock-offset") if "clock" in faults else None
        master_args = ["--node-timeout", args.node_timeout, "--retry-backoff", "500ms", "--max-retries", "20"]
        prefixes: dict[str, list[str]] = {}
        if network is not None:
            allowed = root / "allowed"
            allowed.mkdir()
            prefixes = {name: network.prefix(index) for name, index in NAMESPACED.items()}
            master_args += ["--bind", network.host_address(0), "--allow-keys", str(allowed)]
        cluster = ChaosCluster(root, prefixes, clock, master_args=master_args)
        if network is not None:
            shutil.copy(root / "config" / "client.key", root / "allowed" / "client.key")
        stack.enter_context(cluster)
        watch = stack.enter_context(EncoderWatch(root))
        cluster.start_master()
        for name in WORKERS:
            cluster.start_worker(name, slots=2)
        cluster.wait_for_nodes(WORKERS)
        started = time.time()
        with cluster.client(timeout=30) as client:
            ids = client.submit_many(jobs_for(args.jobs))
        chaos = Chaos(cluster, faults, args.interval, hold, random.Random(args.seed), network, clock, disk)
        thread = threading.Thread(target=chaos.run, daemon=True)
        thread.start()
        try:
            wait_until_done(cluster, chaos, args.jobs, args.min_cycles, args.deadline)
        finally:
            chaos.stop.set()
            thread.join()
            chaos.resume_all()
        wall = time.time() - started
        chaos.check_master()
        with cluster.client(timeout=30) as client:
            jobs = [patient(client.get, job_id) for job_id in ids]
        missing = outputs_missing(jobs)  # while the workers' dirs still exist
        gaps, gap_jobs = log_gaps(lambda: cluster.client(timeout=30), jobs)
        together = watch.overlaps()
    completed = [j for j in jobs if j["status"] == "completed"]
    twice = [j for j in jobs if sum(e["status"] == "completed" for e in j["history"]) > 1]
    delays, overlapped = redispatch_delays(jobs, chaos.worker_deaths, chaos.disturbances)
    print(json.dumps({
        "bench": "chaos", "faults": faults, "submitted": len(ids), "completed": len(completed),
        "lost": sum(1 for j in jobs if j["status"] not in TERMINAL) + sum(1 for j in jobs if j["status"] == "failed"),
        "completed_twice": len(twice), "outputs_missing": missing, "log_gaps_unmarked": gaps,
        "jobs_with_unmarked_gaps": gap_jobs, "master_exits": len(chaos.master_exits),
        "master_exit_details": chaos.master_exits[:3],
        "encoders_together_max_s": round(max(together.values()), 2) if together else 0.0,
        "encoders_together_jobs": len(together), "encodes_watched": len(watch.seen), "node_timeout_s": node_timeout,
        "max_attempts": max(j["attempts"] for j in jobs), **chaos.counts, "hold_s": hold,
        "disk_full_refused_submits": chaos.disk_refusals, "disk_recovered_after_s": chaos.disk_recoveries,
        "redispatch_after_death_p50_s": round(statistics.median(delays), 2) if delays else None,
        "redispatch_after_death_max_s": round(max(delays), 2) if delays else None,
        "redispatch_goal_s": node_timeout + 1, "redispatches_measured": len(delays),
        "redispatches_across_a_restart_or_step": overlapped, "fault_errors": chaos.errors,
        "seconds": round(wall, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
