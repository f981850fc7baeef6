"""Curves: a metric against steps, tokens, training FLOPs or wall time, one per arm.

An arm of several seeds is one curve: the mean over its runs at each point, with the 95 %
interval of that mean (Student t) as a band; where only one of its runs has reached a
point (a run still training), the curve goes on without a band. Numbers only: drawing is
``plots`` (matplotlib) and ``report``'s (plotly).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import attrs
import numpy as np

from tel_core.analysis import stats
from tel_core.analysis.arms import Arm
from tel_core.analysis.runs import Run

#: The x axes a curve can be drawn against, and their labels.
X_AXES = {
    "step": "step",
    "tokens": "tokens",
    "flops": "training FLOPs",
    "time": "wall time (s)",
}
#: The panels ``tel plot`` and ``tel report`` draw by default.
DEFAULT_Y = ("train/loss", "val/loss", "train/lr", "train/tokens_per_s", "train/grad_norm")
#: The noisy metrics that smoothing smooths (never the learning rate).
SMOOTHED = ("train/loss", "train/grad_norm", "train/tokens_per_s")
#: Namespaces of the loop's own metrics; any other scalar in metrics.jsonl is a probe's.
LOOP_NAMESPACES = ("train/", "val/", "time/", "mem/")


@attrs.frozen(eq=False)
class Curve:
    label: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray  # NaN where no band can be given (fewer than two runs at that point)
    high: np.ndarray
    runs: int


def _x_of_steps(run: Run, axis: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, x) known for the run, to map any record's step onto the ``axis``."""
    if axis == "step":
        return None
    if axis in ("tokens", "flops"):
        known = run.values("train/tokens")
    elif axis == "time":
        known = run.values("time/elapsed_s")
    else:
        raise ValueError(f"unknown x axis {axis!r}; expected one of {', '.join(X_AXES)}")
    if not known:
        return np.zeros(0), np.zeros(0)
    steps = np.array([s for s, _ in known], dtype=float)
    x = np.array([v for _, v in known], dtype=float)
    if axis == "flops":
        x = x * float(run.manifest.get("flops_per_token") or math.nan)
    return steps, x


def ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (0: unchanged)."""
    if smoothing <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    average, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            average = smoothing * average + (1 - smoothing) * v
            weight = smoothing * weight + (1 - smoothing)
        out[i] = average / weight if weight else math.nan
    return out


def run_series(
    run: Run, key: str, axis: str = "step", smoothing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The run's ``key`` against ``axis``: (x, y), in step order."""
    found = run.values(key)
    steps = np.array([s for s, _ in found], dtype=float)
    y = ema(np.array([v for _, v in found], dtype=float), smoothing)
    mapping = _x_of_steps(run, axis)
    if mapping is None:
        return steps, y
    known_steps, known_x = mapping
    if len(known_steps) == 0:
        return np.zeros(0), np.zeros(0)
    return np.interp(steps, known_steps, known_x), y


@functools.cache
def _t(df: int) -> float:
    return stats.t_critical(df)


def arm_curve(arm: Arm, key: str, axis: str = "step", smoothing: float = 0.0) -> Curve | None:
    """The arm's mean curve with its 95 % band; None when no run of the arm has ``key``."""
    series = [run_series(r, key, axis, smoothing) for r in arm.runs]
    series = [(x, y) for x, y in series if len(x)]
    if not series:
        return None
    if len(series) == 1:
        x, y = series[0]
        nan = np.full_like(y, np.nan)
        return Curve(arm.label, x, y, nan, nan.copy(), 1)
    grid = np.unique(np.concatenate([x for x, _ in series]))
    table = np.full((len(series), len(grid)), np.nan)
    for i, (x, y) in enumerate(series):
        inside = (grid >= x.min()) & (grid <= x.max())
        table[i, inside] = np.interp(grid[inside], x, y)
    return _band(arm.label, grid, table)


def _band(label: str, grid: np.ndarray, table: np.ndarray) -> Curve:
    counts = np.isfinite(table).sum(axis=0)
    keep = counts > 0
    grid, table, counts = grid[keep], table[:, keep], counts[keep]
    mean = np.nanmean(table, axis=0)
    low, high = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    several = counts >= 2
    if several.any():
        spread = np.nanstd(table[:, several], axis=0, ddof=1)
        n = counts[several]
        half = np.array([_t(int(k) - 1) for k in n]) * spread / np.sqrt(n)
        low[several], high[several] = mean[several] - half, mean[several] + half
    return Curve(label, grid, mean, low, high, table.shape[0])


def probe_keys(runs: Sequence[Run]) -> list[str]:
    """The scalar keys the runs recorded beyond the loop's own (the probes')."""
    keys: dict[str, None] = {}
    for run in runs:
        for record in run.records:
            for key, value in record.items():
                if (
                    "/" in key
                    and not key.startswith(LOOP_NAMESPACES)
                    and isinstance(value, (int, float))
                ):
                    keys[key] = None
    return sorted(keys)
