"""``tel plot``'s figures, with matplotlib and no display (the Agg backend).

One figure of panels: each chosen metric against the chosen x axis, an arm a line (its
seeds' mean) with its 95 % band shaded; and, for a learning-rate sweep, the classic
panel: the final metric against the learning rate (log axis), a line per batch size,
the best point marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tel_core.analysis.compare import Comparison
from tel_core.analysis.curves import SMOOTHED, X_AXES, Curve, arm_curve
from tel_core.errors import TelError

#: The files matplotlib writes for ``-o``.
SUFFIXES = (".png", ".svg", ".pdf")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TelError("tel plot needs matplotlib: pip install 'tel[lab]'") from None
    matplotlib.use("Agg")  # headless: no display, no window
    import matplotlib.pyplot as plt

    return plt


def lr_points(c: Comparison) -> dict[float, list[tuple[float, float, tuple | None]]]:
    """batch size -> [(lr, mean, ci95)], for the final-metric-against-lr panel."""
    lines: dict[float, list[tuple[float, float, tuple | None]]] = {}
    if c.lr_key is None or c.batch_key is None:
        return lines
    for s in c.summaries:
        lr, batch = s.arm.keys[c.lr_key], s.arm.keys[c.batch_key]
        if s.mean is not None:
            lines.setdefault(batch, []).append((lr, s.mean, s.ci95))
    return {b: sorted(points) for b, points in sorted(lines.items())}


def lr_sweep_keys(c: Comparison) -> tuple[str, str | None] | None:
    """(lr key, batch key or None) when the arms differ in the learning rate."""
    if c.lr_key:
        return c.lr_key, c.batch_key
    lr = [k for k in c.arms.keys if k.split(".")[-1] == "lr"]
    if len(c.arms.keys) == 1 and lr:
        return lr[0], None
    return None


def plot(
    c: Comparison,
    path: Path,
    ys: Sequence[str],
    x: str = "step",
    smoothing: float = 0.0,
) -> list[str]:
    """Write the figure to ``path`` (.png, .svg or .pdf); returns the panels drawn."""
    if path.suffix.lower() not in SUFFIXES:
        raise TelError(f"-o {path}: expected a file ending in {', '.join(SUFFIXES)}")
    if x not in X_AXES:
        raise TelError(f"--x {x}: expected one of {', '.join(X_AXES)}")
    plt = _pyplot()
    panels: list[tuple[str, object]] = []
    for key in ys:
        curves = [
            arm_curve(s.arm, key, x, smoothing if key in SMOOTHED else 0.0) for s in c.summaries
        ]
        curves = [cv for cv in curves if cv is not None]
        if curves:
            panels.append((key, curves))
    sweep = lr_sweep_keys(c)
    count = len(panels) + (1 if sweep else 0)
    if count == 0:
        raise TelError(f"--y {','.join(ys)}: none of these metrics is in the runs")
    columns = 2 if count > 1 else 1
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, curves) in zip(flat, panels, strict=False):
        for i, curve in enumerate(curves):
            color = colors[i % len(colors)]
            label = curve.label + (f" (n={curve.runs})" if curve.runs > 1 else "")
            ax.plot(curve.x, curve.mean, color=color, linewidth=1.3, label=label)
            if np.isfinite(curve.low).any():
                ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.2, lw=0)
        smoothed = f" (EMA {smoothing:g})" if smoothing and key in SMOOTHED else ""
        ax.set_title(key + smoothed)
        ax.set_xlabel(X_AXES[x])
        _limits(ax, curves, log=key in ("train/loss", "val/loss"))
        ax.grid(alpha=0.3)
    if sweep:
        _lr_panel(flat[len(panels)], c, *sweep)
    for ax in flat[count:]:
        ax.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(
            handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small"
        )
    legend_rows = math.ceil(len(labels) / 4) if handles else 0
    figure.tight_layout(rect=(0, 0.04 * legend_rows / rows, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [key for key, _ in panels] + ([f"{c.metric} against {sweep[0]}"] if sweep else [])


def _limits(ax, curves: Sequence[Curve], log: bool) -> None:
    """Fit the axis to the mean curves: a wide band (two seeds: t = 12.7) may leave it."""
    means = np.concatenate([cv.mean[np.isfinite(cv.mean)] for cv in curves])
    if len(means) == 0:
        return
    low, high = float(means.min()), float(means.max())
    if log and low > 0:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ax.set_ylim(low / 1.15, high * 1.15)
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 3, not 3 x 10^0
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    else:
        pad = 0.08 * (high - low) or 0.1 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)


def _lr_panel(ax, c: Comparison, lr_key: str, batch_key: str | None) -> None:
    """Final metric against the learning rate, a line per batch size, the best marked."""
    if batch_key is None:
        lines = {
            None: sorted(
                (s.arm.keys[lr_key], s.mean, s.ci95) for s in c.summaries if s.mean is not None
            )
        }
    else:
        lines = lr_points(c)
    for batch, points in lines.items():
        lrs = [p[0] for p in points]
        means = [p[1] for p in points]
        below = [p[1] - p[2][0] if p[2] else 0.0 for p in points]
        above = [p[2][1] - p[1] if p[2] else 0.0 for p in points]
        label = f"batch {batch:g}" if batch is not None else c.metric
        (line,) = ax.plot(lrs, means, marker="o", label=label)
        ax.errorbar(lrs, means, yerr=[below, above], fmt="none", color=line.get_color(), alpha=0.6)
        best = min(range(len(points)), key=lambda i: means[i])
        ax.plot(
            lrs[best],
            means[best],
            marker="*",
            markersize=16,
            color=line.get_color(),
            markeredgecolor="black",
        )
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    grid = sorted({p[0] for points in lines.values() for p in points})
    ax.set_xticks(grid, [f"{lr:g}" for lr in grid])  # the swept values, as written
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(lr_key)
    ax.set_ylabel(f"{c.metric} ({c.at})")
    ax.set_title(f"{c.metric} against the learning rate (★ best)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
