"""BD-rate and BD-quality (ffrtmp/bdrate.py) against an independent implementation, the `bjontegaard` package
(scipy's PchipInterpolator, numpy.polyfit), on the same points, plus the properties any BD-rate must have."""

from __future__ import annotations

import math
import random

import bjontegaard
import pytest

from ffrtmp.bdrate import Cubic, Pchip, bd_quality, bd_rate

# (rates, qualities) pairs: the anchor, then the test curve
CURVES = [
    # VCEG-M33-like PSNR curves (kbit/s, dB)
    (([100, 200, 400, 800], [30.1, 33.4, 36.2, 38.9]), ([90, 170, 350, 700], [30.5, 33.9, 36.8, 39.2])),
    # x264 vs x265 VMAF at 720p, the test needing less bitrate
    (([1000, 2000, 4000, 8000], [72.0, 83.5, 91.2, 95.8]), ([700, 1400, 2800, 5600], [71.0, 82.9, 91.0, 95.5])),
    # a worse test encoder (more bitrate for the same quality)
    (([300, 600, 1200, 2400, 4800], [28.0, 31.5, 34.4, 37.0, 39.1]),
     ([350, 700, 1400, 2800, 5600], [27.6, 31.0, 34.1, 36.8, 38.8])),
    # unequal point counts, a curve with a kink (PCHIP's slopes limited at the ends)
    (([64, 128, 256, 512, 1024, 2048], [25.0, 29.9, 33.0, 34.1, 36.8, 40.2]),
     ([80, 160, 320, 640, 1280], [25.5, 30.0, 33.5, 35.9, 39.0])),
]


def _random_curves(seed: int) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    """Two increasing rate–quality curves with overlapping quality ranges (seeded: the same every run)."""
    rng = random.Random(seed)

    def curve(start: float, points: int) -> tuple[list[float], list[float]]:
        rates = [start * 2 ** (k + rng.uniform(-0.2, 0.2)) for k in range(points)]
        qualities = [30 + 4 * math.log2(r / 100) + rng.uniform(-0.5, 0.5) for r in rates]
        for k in range(1, points):  # keep qualities strictly increasing, as measured curves are after sorting
            qualities[k] = max(qualities[k], qualities[k - 1] + 0.3)
        return rates, qualities

    return curve(rng.uniform(80, 120), rng.choice([4, 5, 6])), curve(rng.uniform(60, 140), rng.choice([4, 5, 6]))


ALL = CURVES + [_random_curves(seed) for seed in range(12)]


def _points(curve: tuple[list[float], list[float]]) -> list[tuple[float, float]]:
    return list(zip(*curve, strict=True))


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("anchor, test", ALL)
def test_bd_rate_matches_the_bjontegaard_package(anchor: tuple[list[float], list[float]],
                                                 test: tuple[list[float], list[float]], method: str) -> None:
    theirs = bjontegaard.bd_rate(*anchor, *test, method=method, require_matching_points=False, min_overlap=0)
    ours = bd_rate(_points(anchor), _points(test), method)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("anchor, test", ALL)
def test_bd_quality_matches_the_bjontegaard_package(anchor: tuple[list[float], list[float]],
                                                    test: tuple[list[float], list[float]], method: str) -> None:
    theirs = bjontegaard.bd_psnr(*anchor, *test, method=method, require_matching_points=False, min_overlap=0)
    ours = bd_quality(_points(anchor), _points(test), method)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9)


def test_the_examples_point_the_right_way() -> None:
    (a1, t1), (a2, t2), (a3, t3) = CURVES[:3]
    assert bd_rate(_points(a1), _points(t1)) < 0  # the test curve is above and left: less bitrate
    assert bd_rate(_points(a2), _points(t2)) < -20
    assert bd_rate(_points(a3), _points(t3)) > 0  # worse


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_a_curve_needing_a_fixed_fraction_of_the_bitrate_has_that_bd_rate(method: str) -> None:
    anchor = [(100.0, 30.0), (200.0, 33.5), (400.0, 36.1), (800.0, 38.0), (1600.0, 39.2)]
    assert bd_rate(anchor, [(r * 0.8, q) for r, q in anchor], method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(anchor, anchor, method) == pytest.approx(0.0, abs=1e-12)


def test_curves_whose_qualities_do_not_overlap_have_no_bd_rate() -> None:
    low = [(100.0, 20.0), (200.0, 22.0), (400.0, 24.0), (800.0, 26.0)]
    high = [(100.0, 30.0), (200.0, 32.0), (400.0, 34.0), (800.0, 36.0)]
    assert bd_rate(low, high) is None
    assert bd_quality(low, [(r * 100, q) for r, q in high]) is None


def test_bad_points_are_refused_with_a_reason() -> None:
    good = [(100.0, 30.0), (200.0, 33.0), (400.0, 36.0), (800.0, 38.0)]
    with pytest.raises(ValueError, match="positive"):
        bd_rate(good, [(0.0, 30.0), (200.0, 33.0)])
    with pytest.raises(ValueError, match="same quality"):
        bd_rate(good, [(100.0, 30.0), (200.0, 30.0)])
    with pytest.raises(ValueError, match="4 points"):
        bd_rate(good, good[:3], "cubic")
    with pytest.raises(ValueError, match="method"):
        bd_rate(good, good, "akima")


def test_pchip_passes_through_its_points_and_stays_monotone() -> None:
    xs, ys = [0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.1, 2.0, 2.05, 4.0]
    fit = Pchip.fit(xs, ys)
    assert [fit(x) for x in xs] == pytest.approx(ys)
    samples = [fit(i / 100) for i in range(401)]
    assert all(b >= a - 1e-12 for a, b in zip(samples, samples[1:], strict=False))
    assert fit.integrate(0, 4) == pytest.approx(sum(samples[:-1]) / 100 + (samples[-1] - samples[0]) / 200, rel=1e-3)


def test_the_cubic_is_exact_through_four_points() -> None:
    xs = [30.0, 33.0, 36.0, 39.0]
    ys = [0.5 * x**3 - 2 * x + 1 for x in xs]
    fit = Cubic.fit(xs, ys)
    assert [fit(x) for x in xs] == pytest.approx(ys, rel=1e-12)
    assert fit.integrate(30, 39) == pytest.approx((0.125 * 39**4 - 39**2 + 39) - (0.125 * 30**4 - 30**2 + 30))
