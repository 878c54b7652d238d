"""`ffrtmp report --plot FILE.png`: rate–quality curves, one per encoder (matplotlib, the extra `ffrtmp[plots]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffrtmp.errors import InvalidInput

MISSING = "needs matplotlib: pip install 'ffrtmp[plots]'"


def require_matplotlib() -> None:
    """Checked before the master is asked, so a missing extra costs no report."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidInput("plot", MISSING) from None


def quality_axis(points: list[dict[str, Any]]) -> str | None:
    """VMAF where any point has it, else PSNR; None when no point has either."""
    for metric in ("vmaf", "psnr_db"):
        if any(point.get(metric) is not None for point in points):
            return metric
    return None


def plot_curves(points: list[dict[str, Any]], path: Path, title: str) -> int:
    """Draw bitrate (x) against quality (y) per encoder into `path`; returns the number of curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    metric = quality_axis(points)
    if metric is None:
        raise InvalidInput("plot", "no completed job in the report has a measured VMAF or PSNR "
                           "(submit with --quality basic or vmaf)")
    curves: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        if point.get(metric) is not None and point.get("bitrate_kbps") is not None:
            curves.setdefault(point.get("encoder") or "?", []).append((point["bitrate_kbps"], point[metric]))
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        for encoder, xy in sorted(curves.items()):
            xy.sort()
            axes.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=encoder)
        axes.set_xscale("log")
        axes.set_xlabel("bitrate (kbit/s, measured)")
        axes.set_ylabel({"vmaf": "VMAF", "psnr_db": "PSNR (dB)"}[metric])
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        figure.tight_layout()
        try:
            figure.savefig(path, format="png")
        except OSError as exc:
            raise InvalidInput("plot", f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
    return len(curves)
