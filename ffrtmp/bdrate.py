"""Bjøntegaard delta (BD-rate, BD-quality): how much less bitrate one encoder needs than another for the same
quality, averaged over the quality range both were measured at (VCEG-M33; the field's standard comparison of
rate–quality curves).

Log-rate is fitted as a function of quality for each curve, both fits are integrated over the overlapping
quality interval, and the mean difference of log10(rate) becomes a percentage: negative = the test encoder
needs less bitrate than the anchor. Two fits: `pchip` (piecewise cubic Hermite, monotone, today's common
choice and the default) and `cubic` (Bjøntegaard's original least-squares cubic polynomial; needs 4 points).

Pure Python, no numpy: a handful of points per curve needs no array library, and the runtime stays small.
The results match the `bjontegaard` package (scipy's PchipInterpolator, numpy.polyfit) to rounding
(tests/test_bdrate.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
"""(rate, quality): a bitrate (any positive unit, the same for both curves) and its measured quality."""
METHODS = ("pchip", "cubic")


@dataclass(frozen=True)
class Pchip:
    """Piecewise cubic Hermite interpolation with Fritsch–Carlson slopes (scipy's PchipInterpolator):
    monotone between points wherever the data are, no overshoot."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    slopes: tuple[float, ...]

    @classmethod
    def fit(cls, xs: Sequence[float], ys: Sequence[float]) -> Pchip:
        if len(xs) != len(ys) or len(xs) < 2:
            raise ValueError("PCHIP needs at least 2 points")
        if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            raise ValueError("PCHIP needs strictly increasing x")
        h = [b - a for a, b in zip(xs, xs[1:], strict=False)]
        m = [(ys[k + 1] - ys[k]) / h[k] for k in range(len(h))]
        if len(xs) == 2:
            return cls(tuple(xs), tuple(ys), (m[0], m[0]))
        d = [0.0] * len(xs)
        for k in range(1, len(xs) - 1):
            if m[k - 1] * m[k] > 0:  # same sign: a weighted harmonic mean keeps the curve monotone
                w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
        d[0] = _edge_slope(h[0], h[1], m[0], m[1])
        d[-1] = _edge_slope(h[-1], h[-2], m[-1], m[-2])
        return cls(tuple(xs), tuple(ys), tuple(d))

    def _segment(self, x: float) -> int:
        for k in range(len(self.xs) - 2, -1, -1):
            if x >= self.xs[k]:
                return k
        return 0

    def _poly(self, k: int) -> tuple[float, float, float, float]:
        """y = a + b·s + c·s² + e·s³ with s = x − xs[k] on segment k."""
        h = self.xs[k + 1] - self.xs[k]
        m = (self.ys[k + 1] - self.ys[k]) / h
        d0, d1 = self.slopes[k], self.slopes[k + 1]
        return self.ys[k], d0, (3 * m - 2 * d0 - d1) / h, (d0 + d1 - 2 * m) / (h * h)

    def __call__(self, x: float) -> float:
        k = self._segment(x)
        a, b, c, e = self._poly(k)
        s = x - self.xs[k]
        return a + s * (b + s * (c + s * e))

    def integrate(self, low: float, high: float) -> float:
        """The integral from `low` to `high` (inside the fitted range, low ≤ high)."""
        total = 0.0
        for k in range(len(self.xs) - 1):
            start, end = max(low, self.xs[k]), min(high, self.xs[k + 1])
            if end <= start:
                continue
            a, b, c, e = self._poly(k)
            total += _poly_integral((a, b, c, e), start - self.xs[k], end - self.xs[k])
        return total


def _edge_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """The one-sided three-point slope at an end, limited so the end segment stays monotone (scipy's rule)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if _sign(d) != _sign(m0):
        return 0.0
    if _sign(m0) != _sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return d


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _poly_integral(coefficients: Sequence[float], start: float, end: float) -> float:
    """∫ Σ cᵢ·sⁱ ds from start to end (coefficients lowest power first)."""
    return sum(c * (end ** (i + 1) - start ** (i + 1)) / (i + 1) for i, c in enumerate(coefficients))


@dataclass(frozen=True)
class Cubic:
    """The least-squares cubic polynomial through the points (Bjøntegaard's original fit), solved on centred,
    scaled x by a QR decomposition, so qualities near 40 dB lose no precision to x⁶ terms."""

    centre: float
    scale: float
    coefficients: tuple[float, float, float, float]

    @classmethod
    def fit(cls, xs: Sequence[float], ys: Sequence[float]) -> Cubic:
        if len(xs) != len(ys) or len(xs) < 4:
            raise ValueError("the cubic fit needs at least 4 points")
        centre = sum(xs) / len(xs)
        scale = max(abs(x - centre) for x in xs) or 1.0
        rows = [[((x - centre) / scale) ** p for p in range(4)] for x in xs]
        return cls(centre, scale, _least_squares(rows, list(ys)))

    def __call__(self, x: float) -> float:
        t = (x - self.centre) / self.scale
        return sum(c * t**i for i, c in enumerate(self.coefficients))

    def integrate(self, low: float, high: float) -> float:
        t0, t1 = (low - self.centre) / self.scale, (high - self.centre) / self.scale
        return self.scale * _poly_integral(self.coefficients, t0, t1)


def _least_squares(rows: list[list[float]], ys: list[float]) -> tuple[float, float, float, float]:
    """Minimise |A·c − y| by modified Gram–Schmidt QR (4 columns), then back substitution."""
    columns = [[row[j] for row in rows] for j in range(4)]
    q: list[list[float]] = []
    r = [[0.0] * 4 for _ in range(4)]
    for j, column in enumerate(columns):
        v = list(column)
        for i, qi in enumerate(q):
            r[i][j] = sum(a * b for a, b in zip(qi, v, strict=True))
            v = [a - r[i][j] * b for a, b in zip(v, qi, strict=True)]
        norm = math.sqrt(sum(a * a for a in v))
        if norm == 0:
            raise ValueError("the cubic fit needs 4 distinct x values")
        r[j][j] = norm
        q.append([a / norm for a in v])
    qty = [sum(a * b for a, b in zip(qi, ys, strict=True)) for qi in q]
    c = [0.0] * 4
    for i in range(3, -1, -1):
        c[i] = (qty[i] - sum(r[i][k] * c[k] for k in range(i + 1, 4))) / r[i][i]
    return c[0], c[1], c[2], c[3]


def fit(xs: Sequence[float], ys: Sequence[float], method: str) -> Pchip | Cubic:
    if method == "pchip":
        return Pchip.fit(xs, ys)
    if method == "cubic":
        return Cubic.fit(xs, ys)
    raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")


def _by_quality(points: Sequence[Point]) -> tuple[list[float], list[float]]:
    """Qualities (increasing) and log10 rates, after checking the points."""
    for rate, quality in points:
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(quality)):
            raise ValueError(f"({rate}, {quality}): a rate must be positive and a quality finite")
    ordered = sorted(points, key=lambda p: p[1])
    if any(b[1] == a[1] for a, b in zip(ordered, ordered[1:], strict=False)):
        raise ValueError("two points of one curve have the same quality")
    return [q for _, q in ordered], [math.log10(r) for r, _ in ordered]


def bd_rate(anchor: Sequence[Point], test: Sequence[Point], method: str = "pchip") -> float | None:
    """The test curve's average bitrate difference from the anchor's at equal quality, in percent
    (−20.0: 20 % less bitrate for the same quality). None when the curves' quality ranges do not overlap."""
    qa, la = _by_quality(anchor)
    qt, lt = _by_quality(test)
    low, high = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if high <= low:
        return None
    mean = (fit(qt, lt, method).integrate(low, high) - fit(qa, la, method).integrate(low, high)) / (high - low)
    return (10**mean - 1) * 100


def bd_quality(anchor: Sequence[Point], test: Sequence[Point], method: str = "pchip") -> float | None:
    """The test curve's average quality difference from the anchor's at equal bitrate (BD-PSNR, BD-VMAF):
    quality fitted against log10(rate) over the overlapping rate range. None when the rates do not overlap."""
    ra = sorted((math.log10(r), q) for r, q in anchor)
    rt = sorted((math.log10(r), q) for r, q in test)
    low, high = max(ra[0][0], rt[0][0]), min(ra[-1][0], rt[-1][0])
    if high <= low:
        return None
    fa = fit([x for x, _ in ra], [y for _, y in ra], method)
    ft = fit([x for x, _ in rt], [y for _, y in rt], method)
    return (ft.integrate(low, high) - fa.integrate(low, high)) / (high - low)
