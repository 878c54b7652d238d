"""`ffrtmp recommend`: the cheapest measured encoder and bitrate expected to meet a quality target.

No model of encoders is assumed: each encoder's (and preset's) measured points at one resolution and frame rate
form its rate–quality curve. Points at the same bitrate are averaged; the curve is made monotone (isotonic
regression: more bitrate never measures as less quality) and interpolated with PCHIP in log-rate, the same fit
BD-rate uses; the bitrate where it meets the target is read off it. Cost, energy and CPU time at that bitrate
are interpolated (in log-rate) between the two measured bitrates around it, per second of video. An encoder
with fewer than `MIN_POINTS` bitrates, or a target outside what it was measured at, gets no bitrate: instead
the exact `ffrtmp jobs sweep` that would measure enough.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ffrtmp.bdrate import Pchip
from ffrtmp.errors import InvalidInput
from ffrtmp.units import parse_bitrate, parse_resolution

if TYPE_CHECKING:  # the client imports this module for `request_args`: it must not load the master's store
    from ffrtmp.master.store.history import MeasuredJob

MIN_POINTS = 4
"""Distinct bitrates a curve needs before it is trusted (a cubic through fewer would be a guess)."""
TARGETS = {"vmaf": "vmaf", "psnr": "psnr_db"}
"""`--target-vmaf` / `--target-psnr` → the metric in a job's metrics."""
QUALITY_OF = {"vmaf": "vmaf", "psnr_db": "basic"}
"""The `--quality` a job needs to measure the metric."""
BASES = ("cost", "energy_joules", "cpu_seconds")
"""What "cheapest" compares, in order of preference: the first that every candidate has."""
LADDER_BITS_PER_PIXEL = (0.05, 0.1, 0.2, 0.4)
"""A first sweep's bitrates when nothing was measured yet: a wide span of bits per pixel, to be measured."""
STEP = 1.6
"""The ratio between the bitrates of a suggested sweep that extends a curve up or down."""


def request_args(resolution: str, fps: int, target_vmaf: float | None, target_psnr: float | None,
                 codec: str | None) -> dict[str, Any]:
    """The `recommend` request's arguments from one target (the Python API's and the HTTP API's form)."""
    if (target_vmaf is None) == (target_psnr is None):
        raise InvalidInput("target-vmaf", "give exactly one of target_vmaf and target_psnr")
    metric, target = ("vmaf", target_vmaf) if target_vmaf is not None else ("psnr", target_psnr)
    args = {"resolution": resolution, "fps": fps, "metric": metric, "target": target, "codec": codec}
    return {k: v for k, v in args.items() if v is not None}


@dataclass(frozen=True)
class Measurement:
    job: str
    bitrate_kbps: int
    quality: float
    cost: float | None
    """Per second of video, in `currency`."""
    currency: str | None
    energy_joules: float | None
    """Per second of video."""
    cpu_seconds: float | None
    """Per second of video."""

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "bitrate_kbps": self.bitrate_kbps, "quality": self.quality,
                "cost_per_s": self.cost, "currency": self.currency, "energy_joules_per_s": self.energy_joules,
                "cpu_seconds_per_s": self.cpu_seconds}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def measurement(job: MeasuredJob, metric: str) -> Measurement | None:
    """The job's point on its curve, or None when the stored job lacks what a point needs."""
    params, metrics = job["params"], job["metrics"]
    quality, duration = _number(metrics.get(metric)), _number(params.get("duration"))
    try:
        bitrate = parse_bitrate(params.get("bitrate"))  # type: ignore[arg-type]
    except InvalidInput:
        return None
    if quality is None or duration is None or duration <= 0:
        return None

    def per_second(key: str) -> float | None:
        value = _number(metrics.get(key))
        return None if value is None else value / duration

    cost = per_second("cost")
    currency = metrics.get("currency") if isinstance(metrics.get("currency"), str) else None
    return Measurement(job["id"], bitrate, quality, cost, currency if cost is not None else None,
                       per_second("energy_joules"), per_second("cpu_seconds"))


@dataclass
class Curve:
    """One encoder's (and preset's) measurements at the asked resolution and frame rate."""

    encoder: str
    preset: str | None
    codec: str
    scenario: str
    points: list[Measurement]


def curves(jobs: Iterable[MeasuredJob], metric: str) -> list[Curve]:
    found: dict[tuple[str, str | None], Curve] = {}
    scenarios: dict[tuple[str, str | None], Counter[str]] = {}
    for job in jobs:
        point = measurement(job, metric)
        if point is None:
            continue
        codec = str(job["params"].get("codec") or "")
        encoder = job["metrics"].get("encoder")
        encoder = encoder if isinstance(encoder, str) and encoder else codec
        preset = job["params"].get("preset") if isinstance(job["params"].get("preset"), str) else None
        key = (encoder, preset)
        curve = found.setdefault(key, Curve(encoder, preset, codec, "", []))
        curve.points.append(point)
        scenarios.setdefault(key, Counter())[job["scenario"]] += 1
    for key, curve in found.items():
        curve.scenario = scenarios[key].most_common(1)[0][0]
    return sorted(found.values(), key=lambda c: (c.encoder, c.preset or ""))


@dataclass(frozen=True)
class Level:
    """The measurements at one bitrate, averaged (each number over the measurements that have it)."""

    bitrate_kbps: int
    quality: float
    count: int
    cost: float | None
    currency: str | None
    energy_joules: float | None
    cpu_seconds: float | None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def levels(points: Sequence[Measurement]) -> list[Level]:
    by_rate: dict[int, list[Measurement]] = {}
    for point in points:
        by_rate.setdefault(point.bitrate_kbps, []).append(point)
    out = []
    for rate in sorted(by_rate):
        group = by_rate[rate]
        currencies = {p.currency for p in group if p.currency is not None}
        cost = _mean([p.cost for p in group]) if len(currencies) <= 1 else None  # mixed currencies: no sum
        out.append(Level(rate, sum(p.quality for p in group) / len(group), len(group), cost,
                         next(iter(currencies)) if cost is not None and currencies else None,
                         _mean([p.energy_joules for p in group]), _mean([p.cpu_seconds for p in group])))
    return out


def monotone(values: Sequence[float], weights: Sequence[int]) -> list[float]:
    """The non-decreasing sequence closest to `values` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [weighted sum, weight, how many values]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value * weight, float(weight), 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    return [total / weight for total, weight, n in blocks for _ in range(int(n))]


def bitrate_for(rates: Sequence[int], qualities: Sequence[float], target: float) -> float:
    """The bitrate (kbit/s) where the monotone curve through (rate, quality) reaches `target`, which lies within
    the qualities: PCHIP of log10(rate) against quality, over the lowest rate of each distinct quality."""
    xs: list[float] = []
    ys: list[float] = []
    for rate, quality in zip(rates, qualities, strict=True):
        if not xs or quality > xs[-1]:
            xs.append(quality)
            ys.append(math.log10(rate))
    if len(xs) == 1 or target <= xs[0]:
        return float(10 ** ys[0])
    return float(10 ** Pchip.fit(xs, ys)(target))


def _between(levels_: Sequence[Level], rate: float, key: str) -> float | None:
    """`key` at `rate`, linear in log-rate between the measured bitrates around it (or at one exactly)."""
    for level in levels_:
        if level.bitrate_kbps == rate:
            return getattr(level, key)  # type: ignore[no-any-return]
    for low, high in zip(levels_, levels_[1:], strict=False):
        if low.bitrate_kbps <= rate <= high.bitrate_kbps:
            a, b = getattr(low, key), getattr(high, key)
            if a is None or b is None:
                return None
            t = math.log(rate / low.bitrate_kbps) / math.log(high.bitrate_kbps / low.bitrate_kbps)
            return float(a + (b - a) * t)
    return None


def _kbps_text(kbps: float) -> str:
    """A bitrate for a command line, to two significant figures (a sweep's bitrates need no more)."""
    kbps = min(max(kbps, 16.0), 500_000.0)
    step = 10 ** max(0, int(math.floor(math.log10(kbps))) - 1)
    return f"{max(16, int(round(kbps / step) * step))}k"


@dataclass(frozen=True)
class Query:
    resolution: str
    fps: int
    metric: str
    target: float
    codec: str | None = None


def sweep_command(query: Query, scenario: str, codecs: Sequence[str], bitrates: Sequence[float],
                  preset: str | None = None) -> str:
    argv = ["ffrtmp", "jobs", "sweep", "--scenario", scenario, "--resolution", query.resolution,
            "--fps", str(query.fps), "--codecs", ",".join(codecs),
            "--bitrates", ",".join(dict.fromkeys(_kbps_text(b) for b in bitrates))]
    if preset is not None:
        argv += ["--presets", preset]
    return shlex.join([*argv, "--quality", QUALITY_OF[query.metric], "--wait"])


def first_ladder(query: Query) -> list[float]:
    width, height = parse_resolution(query.resolution)
    return [width * height * query.fps * bpp / 1000 for bpp in LADDER_BITS_PER_PIXEL]


def _suggested_rates(query: Query, levels_: Sequence[Level], fitted: Sequence[float]) -> list[float]:
    low, high = levels_[0].bitrate_kbps, levels_[-1].bitrate_kbps
    if fitted[-1] < query.target:  # never reached: measure above the highest bitrate
        return [high * STEP ** k for k in range(1, MIN_POINTS + 1)]
    if fitted[0] > query.target:  # already exceeded at the lowest: measure below it
        return [low / STEP ** k for k in range(1, MIN_POINTS + 1)]
    span = math.log(high * 2) - math.log(low / 2)
    return [math.exp(math.log(low / 2) + span * k / (MIN_POINTS - 1)) for k in range(MIN_POINTS)]


def evaluate(curve: Curve, query: Query) -> dict[str, Any]:
    """One encoder's answer: a bitrate and its expected cost, or why not and the sweep that would tell."""
    levels_ = levels(curve.points)
    answer: dict[str, Any] = {"encoder": curve.encoder, "preset": curve.preset, "codec": curve.codec,
                              "scenario": curve.scenario, "measurements": [p.to_dict() for p in curve.points],
                              "bitrates_measured": len(levels_)}
    fitted = monotone([lv.quality for lv in levels_], [lv.count for lv in levels_])
    answer["measured_quality"] = [min(fitted), max(fitted)]
    note = None
    if len(levels_) < MIN_POINTS:
        note = f"{len(levels_)} measured bitrate(s); {MIN_POINTS} are needed for a curve"
    elif not fitted[0] <= query.target <= fitted[-1]:
        side = "above" if query.target > fitted[-1] else "below"
        note = (f"target {query.target:g} is {side} the measured range {fitted[0]:.2f}–{fitted[-1]:.2f} "
                f"({levels_[0].bitrate_kbps}k–{levels_[-1].bitrate_kbps}k)")
    if note is not None:
        codec = curve.encoder if curve.encoder else curve.codec
        answer.update(status="insufficient", note=note, sweep=sweep_command(
            query, curve.scenario, [codec], _suggested_rates(query, levels_, fitted), curve.preset))
        return answer
    rate = bitrate_for([lv.bitrate_kbps for lv in levels_], fitted, query.target)
    kbps = max(16, math.ceil(round(rate, 6)))  # up keeps the target met; round: 10**log10(200) is 200.00000000000003
    around = ([lv for lv in levels_ if lv.bitrate_kbps <= kbps][-1:]
              + [lv for lv in levels_ if lv.bitrate_kbps >= kbps][:1])
    currencies = {lv.currency for lv in around}
    answer.update(status="ok", note=None, sweep=None, bitrate_kbps=kbps, bitrate=f"{kbps}k",
                  cost_per_s=_between(levels_, kbps, "cost") if len(currencies) == 1 else None,
                  currency=next(iter(currencies)) if len(currencies) == 1 else None,
                  energy_joules_per_s=_between(levels_, kbps, "energy_joules"),
                  cpu_seconds_per_s=_between(levels_, kbps, "cpu_seconds"),
                  around=sorted({lv.bitrate_kbps for lv in around}))
    return answer


def _cheapest(candidates: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The candidate that costs least, by the first basis every candidate has (one currency for cost)."""
    for basis in BASES:
        key = f"{basis}_per_s"
        if all(c[key] is not None for c in candidates) and (
                basis != "cost" or len({c["currency"] for c in candidates}) == 1):
            return min(candidates, key=lambda c: (c[key], c["bitrate_kbps"])), basis
    return min(candidates, key=lambda c: c["bitrate_kbps"]), "bitrate"


def submit_command(query: Query, chosen: dict[str, Any]) -> str:
    argv = ["ffrtmp", "jobs", "submit", "--scenario", chosen["scenario"], "--resolution", query.resolution,
            "--fps", str(query.fps), "--codec", chosen["encoder"], "--bitrate", chosen["bitrate"]]
    if chosen["preset"] is not None:
        argv += ["--preset", chosen["preset"]]
    return shlex.join([*argv, "--quality", QUALITY_OF[query.metric]])


def recommend(jobs: Iterable[MeasuredJob], query: Query) -> dict[str, Any]:
    """The answer of a `recommend` request: the choice (or None), every encoder's evaluation, the sweeps to run."""
    encoders = [evaluate(curve, query) for curve in curves(jobs, query.metric)]
    candidates = [e for e in encoders if e["status"] == "ok"]
    sweeps = [e["sweep"] for e in encoders if e["sweep"] is not None]
    if not encoders:
        codecs = [query.codec] if query.codec else ["h264", "h265"]
        sweeps.append(sweep_command(query, "sweep", codecs, first_ladder(query)))
    result: dict[str, Any] = {"resolution": query.resolution, "fps": query.fps, "metric": query.metric,
                              "target": query.target, "codec": query.codec, "recommendation": None,
                              "encoders": encoders, "sweeps": sweeps}
    if candidates:
        chosen, basis = _cheapest(candidates)
        result["recommendation"] = {
            **{k: chosen[k] for k in ("encoder", "preset", "codec", "bitrate", "bitrate_kbps", "cost_per_s",
                                      "currency", "energy_joules_per_s", "cpu_seconds_per_s", "around")},
            "expected_quality": query.target, "cheapest_by": basis, "command": submit_command(query, chosen)}
    return result
