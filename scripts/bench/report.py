"""Summary table and docs/benchmarks.md (+ docs/benchmarks.png) from the suite's JSON records.

The Markdown keeps the raw records of the run between two markers, so a later run of only some parts
replaces those parts and keeps the others (each section names the run it comes from).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

Record = dict[str, Any]
PEERS = ("celery", "rq", "dramatiq", "huey")
SYSTEMS = ("ffrtmp", *PEERS)
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
KEPT_BEGIN, KEPT_END = "<!-- kept:begin -->", "<!-- kept:end -->"
"""Around sections the suite does not run (the chaos run needs root): a rewrite of the file keeps them."""


# ---- reading ------------------------------------------------------------------------------------------

def load_previous(md: Path) -> list[Record]:
    try:
        text = md.read_text()
    except OSError:
        return []
    match = re.search(re.escape(BEGIN) + r"\s*```jsonl\n(.*?)```\s*" + re.escape(END), text, re.S)
    if not match:
        return []
    return [json.loads(line) for line in match.group(1).splitlines() if line.strip()]


def merge(previous: list[Record], current: list[Record], parts: set[str]) -> list[Record]:
    """This run's records, plus the previous run's for the parts this run did not measure (with the machine
    record of the run they come from, which names its command)."""
    kept = [r for r in previous if r.get("part") not in parts and r.get("bench") != "machine"]
    runs = {r.get("run") for r in kept}
    machines = [r for r in previous if r.get("bench") == "machine" and r.get("run") in runs]
    return machines + kept + current


def find(records: list[Record], bench: str, **match: Any) -> Record | None:
    for record in reversed(records):
        if record.get("bench") == bench and all(record.get(k) == v for k, v in match.items()):
            return record
    return None


def throughputs(records: list[Record]) -> dict[str, Record]:
    return {s: r for s in SYSTEMS if (r := find(records, "throughput", system=s))}


def best_peer(records: list[Record]) -> Record | None:
    rates = [r for s, r in throughputs(records).items() if s != "ffrtmp"]
    return max(rates, key=lambda r: r["jobs_per_s"]) if rates else None


# ---- targets ------------------------------------------------------------------------------------------

def targets(records: list[Record]) -> list[tuple[str, str, bool | None]]:  # noqa: C901 (one check per target)
    """(target, what was measured, met?) — None where the part was not run."""
    rows: list[tuple[str, str, bool | None]] = []
    ours, best = find(records, "throughput", system="ffrtmp"), best_peer(records)
    if ours and best:
        ratio = ours["jobs_per_s"] / best["jobs_per_s"]
        rows.append(("throughput >= 1.5x the best peer", f"{ratio:.2f}x ({ours['jobs_per_s']:,.0f} vs "
                     f"{best['system']} {best['jobs_per_s']:,.0f} jobs/s)", ratio >= 1.5))
    else:
        rows.append(("throughput >= 1.5x the best peer", "not measured", None))
    null = find(records, "throughput_null_workers", system="ffrtmp")
    if null:
        ratio = null["default_vs_null"]
        rows.append(("default workers within 10 % of `--engines null` ones", f"{ratio:.2f}x (medians of "
                     f"{null['rounds']} alternating rounds: {null['default_jobs_per_s']:,.0f} vs "
                     f"{null['jobs_per_s']:,.0f} jobs/s; worker CPU {null['default_worker_cpu_ms_per_job']:.3f} vs "
                     f"{null['worker_cpu_ms_per_job']:.3f} ms/job"
                     + (f", master CPU {null['default_master_cpu_ms_per_job']:.3f} vs "
                        f"{null['master_cpu_ms_per_job']:.3f} ms/job" if "master_cpu_ms_per_job" in null else "")
                     + ")", ratio >= 0.9))
    else:
        rows.append(("default workers within 10 % of `--engines null` ones", "not measured", None))
    durable = find(records, "durability", system="ffrtmp")
    rows.append(("every acknowledged submit durable",
                 f"{durable['found_after_kill9']:,} of {durable['acked']:,} found after kill -9" if durable
                 else "not measured", (durable["lost"] == 0) if durable else None))
    running = find(records, "latency", system="ffrtmp", measure="submit_to_running")
    for q, limit in (("p50", 2.0), ("p99", 10.0)):
        value = running.get(f"{q}_ms") if running else None
        rows.append((f"submit->running {q} <= {limit:g} ms", f"{value:.2f} ms" if value is not None
                     else "not measured", (value <= limit) if value is not None else None))
    overhead = find(records, "overhead", system="ffrtmp")
    rows.append(overhead_target(overhead))
    scale = find(records, "scale", system="ffrtmp")
    if scale:
        n = f"{scale['workers']:,} workers"
        rows += [(f"{n}: master CPU <= 50 % of a core", f"mean {scale['master_cpu_mean_pct']:.1f} %, "
                  f"p95 {scale['master_cpu_p95_pct']:.1f} %, max {scale['master_cpu_max_pct']:.1f} %",
                  scale["master_cpu_mean_pct"] <= 50.0),
                 (f"{n}: master RSS <= 200 MiB", f"max {scale['master_rss_max_mib']:.0f} MiB",
                  scale["master_rss_max_mib"] <= 200.0),
                 (f"{n}: 0 false dead-node detections", str(scale["false_dead"]), scale["false_dead"] == 0)]
    else:
        rows.append(("1,000 workers: CPU, RSS, false dead nodes", "not measured", None))
    lists = [r for r in records if r.get("bench") == "jobs_list"]
    if lists:
        worst = max(lists, key=lambda r: r["p50_ms"])
        rows.append((f"`jobs list` <= 100 ms on {worst['store_jobs']:,} jobs",
                     "p50 " + ", ".join(f"{r['filter']} {r['p50_ms']:.1f} ms" for r in lists),
                     worst["p50_ms"] <= 100.0))
    else:
        rows.append(("`jobs list` <= 100 ms on 1,000,000 jobs", "not measured", None))
    return rows


def overhead_target(overhead: Record | None) -> tuple[str, str, bool | None]:
    """Met only when the 95 % interval of the round ratio lies under 1.01; None when it straddles the goal."""
    name = "real-work overhead <= 1 % over xargs -P 2"
    if not overhead:
        return name, "not measured", None
    measured = (f"{overhead['overhead_percent']:+.1f} % ({overhead['ffrtmp_seconds']:.1f} s vs "
                f"{overhead['xargs_seconds']:.1f} s)")
    if "round_ratio_ci95" not in overhead:
        return name, measured, overhead["overhead_percent"] <= 1.0
    mean, ci = overhead["round_ratio_mean"], overhead["round_ratio_ci95"]
    measured += f"; round ratio {mean:.3f} ± {ci:.3f} (95 %)"
    if "own_cpu_percent_of_ffmpeg" in overhead:
        measured += (f"; CPU: ffrtmp's own {overhead['own_cpu_percent_of_ffmpeg']:.1f} % of FFmpeg's, all "
                     f"{overhead['cpu_ratio']:.3f}x xargs'")
    if mean + ci <= 1.01:
        return name, measured, True
    if mean - ci > 1.01:
        return name, measured, False
    return name, measured + ": the interval straddles the goal, wall time cannot tell", None


# ---- text ---------------------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def _lat(record: Record | None) -> str:
    if not record or not record.get("n"):
        return "-"
    return f"{record['p50_ms']:.2f} / {record['p90_ms']:.2f} / {record['p99_ms']:.2f}"


def systems_table(records: list[Record], markdown: bool = False) -> str:
    header = ["system", "jobs/s (first submit -> last done)", "enqueue/s", "submit->running p50/p90/p99 ms",
              "submit->completed p50/p90/p99 ms", "ffrtmp / this (jobs/s)"]
    rates = throughputs(records)
    ours = rates.get("ffrtmp")
    rows = []
    for system in SYSTEMS:
        rate = rates.get(system)
        error = find(records, "error", system=system)
        running = find(records, "latency", system=system, measure="submit_to_running")
        done = find(records, "latency", system=system, measure="submit_to_completed")
        if not rate and not running:
            if error:
                rows.append([system, f"failed: {error['error'][:80]}", "-", "-", "-", "-"])
            continue
        relative = f"{ours['jobs_per_s'] / rate['jobs_per_s']:.2f}x" if ours and rate and system != "ffrtmp" else ""
        rows.append([system, f"{rate['jobs_per_s']:,.0f}" if rate else "-",
                     f"{rate['enqueue_per_s']:,.0f}" if rate else "-", _lat(running), _lat(done), relative])
        null = find(records, "throughput_null_workers", system="ffrtmp") if system == "ffrtmp" else None
        if null:  # medians of the alternating rounds, default workers measured the same way beside them
            rows.append(["ffrtmp, alternating rounds: default workers", f"{null['default_jobs_per_s']:,.0f}",
                         "-", "-", "-", ""])
            rows.append(["ffrtmp, alternating rounds: `--engines null` workers", f"{null['jobs_per_s']:,.0f}",
                         "-", "-", "-", f"default / null {null['default_vs_null']:.2f}x"])
    return _table(header, rows, markdown)


def targets_table(records: list[Record], markdown: bool = False) -> str:
    def mark(measured: str, ok: bool | None) -> str:
        if ok is None:
            return "-" if measured == "not measured" else "undecided"
        return "met" if ok else "MISSED"

    return _table(["target", "measured", ""], [[t, m, mark(m, ok)] for t, m, ok in targets(records)], markdown)


def overhead_table(records: list[Record], markdown: bool = False) -> str:
    rounds = [r for r in records if r.get("bench") == "overhead_round"]
    total = find(records, "overhead", system="ffrtmp")
    if not total:
        return "(not measured)"
    rows = [[str(r["round"]), f"{r['ffrtmp_seconds']:.2f}", f"{r['xargs_seconds']:.2f}", f"{r['ratio']:.3f}"]
            for r in rounds]
    rows.append(["mean", f"{total['ffrtmp_seconds']:.2f}", f"{total['xargs_seconds']:.2f}", f"{total['ratio']:.3f}"])
    return _table(["round", "ffrtmp s", "xargs -P 2 s", "ratio"], rows, markdown)


def scale_table(records: list[Record], markdown: bool = False) -> str:
    scale = find(records, "scale", system="ffrtmp")
    if not scale:
        return "(not measured)"
    rows = [["simulated workers (processes)", f"{scale['workers']:,} ({scale['procs']})"],
            ["measured for", f"{scale['seconds']:g} s after all joined (joining took {scale['join_seconds']} s, "
                             f"master CPU meanwhile {scale['join_master_cpu_pct']} %)"],
            ["master CPU % of one core", f"mean {scale['master_cpu_mean_pct']}, p95 {scale['master_cpu_p95_pct']}, "
                                         f"max {scale['master_cpu_max_pct']}"],
            ["master RSS", f"max {scale['master_rss_max_mib']} MiB (end {scale['master_rss_end_mib']} MiB)"],
            ["heartbeats answered", f"{scale['heartbeats']:,} of ~{scale['heartbeats_expected']:,} sent"],
            ["heartbeat -> reply p50 / p90 / p99 / max", f"{scale.get('heartbeat_p50_ms', '-')} / "
             f"{scale.get('heartbeat_p90_ms', '-')} / {scale.get('heartbeat_p99_ms', '-')} / "
             f"{scale.get('heartbeat_max_ms', '-')} ms"],
            ["false dead-node detections", f"{scale['false_dead']} (offline at the end: {scale['offline_at_end']}, "
                                           f"'silent for' log lines: {scale['silent_log_lines']}, "
                                           f"RESYNCs: {scale['resync']})"]]
    for record in records:
        if record.get("bench") == "jobs_list":
            rows.append([f"`jobs list` ({record['filter']}, limit 50) on {record['store_jobs']:,} jobs",
                         f"p50 {record['p50_ms']} ms, p90 {record['p90_ms']} ms, max {record['max_ms']} ms "
                         f"({record['n']} calls)"])
    for bench, label in (("nodes_list", "`nodes list`"), ("stats_call", "`stats` (what `ffrtmp top` asks)")):
        record = find(records, bench)
        if record:
            rows.append([label, f"p50 {record['p50_ms']} ms, max {record['max_ms']} ms ({record['n']} calls)"])
    build = find(records, "store_build")
    if build:
        rows.append(["building the store", f"{build['jobs']:,} jobs in {build['seconds']} s ({build['db_mib']} MiB)"])
    return _table(["measure", "value"], rows, markdown)


def quality_table(records: list[Record], markdown: bool = False) -> str:
    rows = [[r["mode"], r["source"], str(r["jobs"]), f"{r['overhead_ratio_median']:.3f}", f"{r['target']:g}",
             "met" if r["met"] else "MISSED"] for r in records if r.get("bench") == "quality"]
    if not rows:
        return "(not measured)"
    return _table(["--quality", "source", "jobs", "pass / encode wall time", "target", ""], rows, markdown)


def summary(records: list[Record]) -> str:
    parts = ["== throughput and latency (one run, same machine) ==", systems_table(records), "",
             "== real-work overhead ==", overhead_table(records), "", "== scale ==", scale_table(records), "",
             "== quality pass ==", quality_table(records), "", "== targets ==", targets_table(records)]
    return "\n".join(parts)


# ---- chart --------------------------------------------------------------------------------------------

def chart(records: list[Record], png: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = throughputs(records)
    names = [s for s in SYSTEMS if s in rates or find(records, "latency", system=s)]
    if not names:
        return False
    colors = ["#d62728" if s == "ffrtmp" else "#7f7f7f" for s in names]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    jobs = [rates[s]["jobs_per_s"] if s in rates else 0 for s in names]
    axes[0].bar(names, jobs, color=colors)
    axes[0].set_title("throughput: jobs/s, first submit -> last done")
    enqueue = [rates[s]["enqueue_per_s"] if s in rates else 0 for s in names]
    axes[1].bar(names, enqueue, color=colors)
    axes[1].set_title("enqueue rate: jobs/s")
    for ax, values in ((axes[0], jobs), (axes[1], enqueue)):
        for x, value in enumerate(values):
            ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", fontsize=8)
    width = 0.2
    series = [("submit_to_running", "p50_ms", "running p50"), ("submit_to_running", "p99_ms", "running p99"),
              ("submit_to_completed", "p50_ms", "completed p50"), ("submit_to_completed", "p99_ms", "completed p99")]
    for k, (measure, key, label) in enumerate(series):
        values = [(find(records, "latency", system=s, measure=measure) or {}).get(key, 0) for s in names]
        axes[2].bar([x + (k - 1.5) * width for x in range(len(names))], values, width, label=label)
    axes[2].set_xticks(range(len(names)), names)
    axes[2].set_title("latency on an idle cluster: ms after submit")
    axes[2].legend(fontsize=8)
    machine = find(records, "machine") or {}
    fig.suptitle(f"ffrtmp vs Celery, RQ, Dramatiq, Huey: one run on one machine "
                 f"({machine.get('cpus', '?')} CPUs, {machine.get('run', '')})", fontsize=11)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


# ---- docs/benchmarks.md -------------------------------------------------------------------------------

def _run_of(records: list[Record], part: str) -> str:
    runs = sorted({r.get("run", "?") for r in records if r.get("part") == part})
    return ", ".join(runs) if runs else "not run"


def _command_of(records: list[Record], part: str) -> str:
    """How the section's figures were made: the suite command of the run(s) they come from."""
    runs = {r.get("run") for r in records if r.get("part") == part}
    commands = sorted({r["command"] for r in records if r.get("bench") == "machine" and r.get("run") in runs
                       and r.get("command")})
    return "Reproduce: " + ", ".join(f"`{c}`" for c in commands) + "." if commands else ""


def _settings(records: list[Record]) -> str:
    lines = []
    for system in SYSTEMS:
        record = find(records, "throughput", system=system) or find(records, "latency", system=system)
        if record:
            lines.append(f"- **{system}** {record.get('version', '')}: {record.get('setting', '')}; "
                         f"broker/store: {record.get('broker', '')}")
        elif (error := find(records, "error", system=system)):
            lines.append(f"- **{system}**: did not run: {error['error']}")
    return "\n".join(lines)


def tune_table(records: list[Record]) -> str:
    rows = [[r["system"], f"`{r['variant']}`", f"{r['jobs_per_s']:,.0f}", f"{r['enqueue_per_s']:,.0f}"]
            for r in records if r.get("bench") == "tune"]
    if not rows:
        return ""
    return ("Settings tried before the measured run (one short throughput run each; the fastest was kept; "
            "differences of 10-20 % between single runs are within this machine's noise):\n\n"
            + _table(["system", "setting", "jobs/s", "enqueue/s"], rows, True))


def polling_note(records: list[Record]) -> str:
    polled = find(records, "throughput_stats_polling", system="ffrtmp")
    lean = find(records, "throughput", system="ffrtmp")
    if not polled or not lean:
        return ""
    return (f"ffrtmp's jobs/s above learns the end with one `Client.wait` on the last job, then `stats` every 20 ms "
            f"for the tail. `scripts/bench/throughput.py` polls `stats` every 20 ms all along; measured the same way "
            f"in this run: **{polled['jobs_per_s']:,.0f} jobs/s** "
            f"(vs {lean['jobs_per_s']:,.0f}).")


def profile_section(records: list[Record]) -> str:
    profiles = [r for r in records if r.get("bench") == "profile"]
    if not profiles:
        return ""
    parts = ["## Where ffrtmp's time goes (py-spy during the throughput run)", "",
             "Share of samples (the profiled run is slower than an unprofiled one):", ""]
    for record in profiles:
        rows = [[name, f"{pct:.1f} %"] for name, pct in record["self_pct"][:10]]
        parts += [f"**{record['process']}** ({record['samples']} samples), own time:", "",
                  _table(["function", "share"], rows, True), ""]
    return "\n".join(parts)


def markdown(records: list[Record], png_name: str | None, command: str) -> str:
    best = best_peer(records)
    ours = find(records, "throughput", system="ffrtmp")
    ratio = (f"**ffrtmp / best peer ({best['system']}) = {ours['jobs_per_s'] / best['jobs_per_s']:.2f}x** "
             "end-to-end throughput, measured in the same run." if ours and best else "")
    raw = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    sections = [
        "# Benchmarks: ffrtmp side by side with Celery, RQ, Dramatiq, Huey and plain FFmpeg",
        "",
        "Generated by `scripts/bench/run` (do not edit by hand: the next run rewrites this file). "
        "Claims of speed here are ratios measured in one run on one machine; absolute numbers depend on it.",
        "",
        _machines(records, command),
        "",
        f"## Throughput and latency (run {_run_of(records, 'compare')})",
        "",
        f"![throughput and latency of every system]({png_name})" if png_name else "",
        "",
        _command_of(records, "compare"),
        "",
        systems_table(records, markdown=True),
        "",
        ratio,
        "",
        polling_note(records),
        "",
        "What each number is:",
        "",
        "- **jobs/s**: N no-op jobs (`null` engine for ffrtmp) enqueued by one client as fast as its API allows "
        "(`submit_many` for ffrtmp, `enqueue_many` for RQ, one call per task for Celery, Dramatiq and Huey, which "
        "have no batch enqueue), from the first enqueue until the last job has completed.",
        "- **enqueue/s**: the enqueue alone (the peers' workers are already consuming while it runs).",
        "- **ffrtmp's workers** are default workers, what users start: `ffrtmp worker --slots N` (FFmpeg and "
        "GStreamer detected, every usable encoder validated at start), plus the connection options "
        "(`--name bench-1 --work-dir DIR --metrics-port 0 --master tcp://127.0.0.1:PORT --master-key "
        "DIR/master.key`). **alternating rounds**: default workers and `--engines null` ones (which detect "
        "nothing) take turns on fresh clusters (ABBA order since 2026-12-02 21:20 UTC, before that ABAB), each "
        "warmed up with a quarter of the jobs first; the medians of each kind are compared (the target: default "
        "within 10 % of null), with the CPU the workers (and the master) spent per job.",
        "- **submit->running**: on an idle cluster, one job at a time: the client's clock just before the submit "
        "until the worker starts the job (ffrtmp: the attempt's start stamp, read at full precision from the "
        "master's store; peers: the task body's first line). **submit->completed**: until the client knows the job "
        "is done (ffrtmp: `Client.wait` returns; peers: the task's RPUSH wakes the client's BLPOP, which is the "
        "fastest way a client can learn it, faster than their result backends' polling).",
        "- Every peer counts completions the same way: the task increments a Redis counter (throughput) or pushes "
        "its start time to a list (latency) — one Redis round trip inside each task, which ffrtmp's `null` "
        "jobs do not pay.",
        "",
        "Settings: 2 worker processes for every system; for each, the settings its docs recommend for short tasks "
        "were tried in this run (table below) and the fastest was measured (`CANDIDATES` in "
        "`scripts/bench/compare_peers.py`, `--slots` for ffrtmp; `--variant` fixes one):",
        "",
        _settings(records),
        "",
        tune_table(records),
        "",
        "**Durability is not equal.** ffrtmp acknowledges a submit only after it is committed to SQLite (WAL, "
        "`synchronous=NORMAL`: survives a crash of the master process; the last commits can be lost on power "
        "loss). The peers' Redis runs with persistence off (`--save '' --appendonly no`), so everything queued "
        "is lost if Redis stops; with AOF (`appendfsync everysec` or `always`) Redis would also write every enqueue "
        "to disk, which this benchmark does not measure.",
        "",
        _durability(records),
        "",
        f"## Overhead on real work (run {_run_of(records, 'overhead')})",
        "",
        _overhead_intro(records),
        "",
        _command_of(records, "overhead"),
        "",
        overhead_table(records, markdown=True),
        "",
        f"## Scale: 1,000 workers and 1,000,000 jobs (run {_run_of(records, 'scale')})",
        "",
        "A master (CURVE on) on a store of finished jobs; simulated workers are plain DEALERs speaking the worker "
        "protocol (HELLO, then HEARTBEAT every second as the master's WELCOME says), spread over a few processes. "
        "A false dead-node detection is any simulated worker the master marked offline: all of them keep "
        "heartbeating.",
        "",
        _command_of(records, "scale"),
        "",
        scale_table(records, markdown=True),
        "",
        profile_section(records),
        "## Targets",
        "",
        targets_table(records, markdown=True),
        "",
        "## Raw results",
        "",
        "<details><summary>JSON lines of the run(s) above</summary>",
        "",
        BEGIN,
        "```jsonl",
        raw,
        "```",
        END,
        "",
        "</details>",
        "",
    ]
    return "\n".join(sections)


def _machines(records: list[Record], command: str) -> str:
    """One entry per run the page's figures come from (a later run of some parts keeps the others' run)."""
    machines = [r for r in records if r.get("bench") == "machine"] or [{}]
    entries = []
    for machine in sorted(machines, key=lambda r: str(r.get("run", ""))):
        parts = sorted({r["part"] for r in records if r.get("run") == machine.get("run") and r.get("part")
                        and r.get("part") != "machine"})
        entries.append(
            f"- run {machine.get('run', '?')} ({', '.join(parts) or 'no parts'}): `{machine.get('command', command)}`; "
            f"{machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, {machine.get('memory_gib', '?')} GiB; "
            f"{machine.get('os', '')}; Python {machine.get('python', '?')}; {machine.get('redis', '')}; "
            f"{machine.get('ffmpeg', '')}; ffrtmp {machine.get('git', '?')}")
    return "\n".join(entries)


def _durability(records: list[Record]) -> str:
    record = find(records, "durability", system="ffrtmp")
    if not record:
        return ""
    return (f"Checked in the same run: {record['acked']:,} jobs acknowledged by `submit_many`, the master SIGKILLed "
            f"right after the reply, its store read back: {record['found_after_kill9']:,} found, "
            f"{record['lost']} lost.")


def _overhead_intro(records: list[Record]) -> str:
    record = find(records, "overhead", system="ffrtmp")
    if not record:
        return "(not measured)"
    rounds = [r["ratio"] for r in records if r.get("bench") == "overhead_round"]
    spread = ""
    if "round_ratio_ci95" in record:
        gap, ci = record["round_ratio_mean"] - 1.0, record["round_ratio_ci95"]
        spread = (f" Per-round ratios: mean {record['round_ratio_mean']:.4f} ± {ci:.4f} (95 % interval over "
                  f"{record['rounds']} rounds), single rounds {record['round_ratio_min']:.3f} to "
                  f"{record['round_ratio_max']:.3f}: the interval is "
                  + ("narrower than the gap to 1.0." if ci < abs(gap) else
                     "wider than the gap to 1.0, so this run cannot tell the overhead from 0."))
    elif len(rounds) > 1:
        spread = f" Single rounds ranged from {min(rounds):.3f} to {max(rounds):.3f}."
    cpu = ""
    if "own_cpu_percent_of_ffmpeg" in record:
        cpu = (f" CPU time, which other load moves far less: ffrtmp's master and workers themselves used "
               f"{record['own_cpu_percent_of_ffmpeg']:.1f} % of what xargs' FFmpegs used; all of ffrtmp's CPU "
               f"(its FFmpegs included) over all of xargs': **{record['cpu_ratio']:.3f}**.")
    sessions = (" Each FFmpeg runs in a session of its own on both sides (the workers start theirs so; xargs "
                "through `setsid`): the kernel here shares CPU between sessions first (autogroup), and FFmpegs "
                "sharing one session got less of a loaded machine." if record.get("xargs_own_sessions") else "")
    nice = record.get("xargs_nice")
    xargs_nice = ("xargs runs it as logged, without nice" if not nice else
                  f"xargs runs the same argv under `nice -n {nice}` too (the machine is shared: an un-niced FFmpeg "
                  "would get more of it than the workers' niced one)")
    return (f"{record['transcodes']} identical transcodes ({record['work']}); the input is generated beforehand and "
            "not timed. ffrtmp: a real master and 2 workers × 1 slot, from `submit_many` to the last completion. "
            "xargs: the very command lines the workers logged (outputs moved to a scratch dir), `xargs -P 2`. "
            f"Rounds alternate between the two. ffrtmp runs FFmpeg under `nice -n 10`; {xargs_nice}. "
            f"The command:\n\n```\n{record['command']}\n```\n\n"
            f"Ratio of the summed wall times: **{record['ratio']:.4f}** ({record['overhead_percent']:+.2f} %).{spread}"
            f"{cpu}{sessions}")


def kept_sections(md: Path) -> str:
    """The hand-kept sections of the current file, markers included ("" when there are none)."""
    try:
        text = md.read_text()
    except OSError:
        return ""
    return "\n".join(re.findall(re.escape(KEPT_BEGIN) + r".*?" + re.escape(KEPT_END), text, re.S))


def write_docs(records: list[Record], md: Path, png: Path, command: str) -> None:
    drawn = chart(records, png)
    md.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(md)
    body = markdown(records, png.name if drawn else None, command)
    if kept:
        # Before the raw results, so the file still ends with them.
        body = body.replace("## Raw results", f"{kept}\n\n## Raw results", 1)
    md.write_text(body)
