"""The learning-rate-against-batch-size question: the best lr at each batch size, and the
exponent alpha of best_lr ∝ batch_size^alpha (1: linear scaling, 0.5: square root).

The grid's best lr moves in the grid's steps (3x apart, say), so alpha is fitted to a
finer estimate where one exists: the vertex of the parabola through the best point and
its two neighbours in (log lr, loss). A best lr at the grid's edge has no vertex; it is
used as is, and said to be at the edge (the true optimum may lie beyond it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from tel_core.analysis.stats import LineFit, power_law


@attrs.frozen
class BestLr:
    batch_size: float
    lr: float  # the grid's best
    loss: float  # its mean metric
    fitted_lr: float | None  # the parabola's vertex in log lr; None at the grid's edge
    at_edge: bool

    @property
    def estimate(self) -> float:
        return self.fitted_lr if self.fitted_lr is not None else self.lr


@attrs.frozen
class LrBatch:
    best: tuple[BestLr, ...]  # one per batch size, ascending
    alpha: LineFit | None  # None with fewer than two batch sizes


def parabola_vertex(x: Sequence[float], y: Sequence[float]) -> float:
    """The x of the vertex of the parabola through three points (x ascending)."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    denominator = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denominator
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denominator
    if a <= 0:  # flat or concave: no minimum in between; keep the middle point
        return x1
    return min(max(-b / (2 * a), x0), x2)


def best_lr(points: Sequence[tuple[float, float]], batch_size: float) -> BestLr | None:
    """The best of (lr, mean loss) points at one batch size (non-finite losses lose)."""
    usable = sorted((lr, loss) for lr, loss in points if math.isfinite(loss))
    if not usable:
        return None
    i = min(range(len(usable)), key=lambda j: usable[j][1])
    lr, loss = usable[i]
    if 0 < i < len(usable) - 1:
        trio = usable[i - 1 : i + 2]
        vertex = parabola_vertex([math.log(p[0]) for p in trio], [p[1] for p in trio])
        return BestLr(batch_size, lr, loss, math.exp(vertex), False)
    return BestLr(batch_size, lr, loss, None, len(usable) > 1)


def lr_batch(points: Sequence[tuple[float, float, float]]) -> LrBatch:
    """From (lr, batch_size, mean loss) of every arm: the best lr per batch size and alpha."""
    by_batch: dict[float, list[tuple[float, float]]] = {}
    for lr, batch, loss in points:
        by_batch.setdefault(batch, []).append((lr, loss))
    best = tuple(
        b for batch in sorted(by_batch) if (b := best_lr(by_batch[batch], batch)) is not None
    )
    alpha = None
    if len(best) >= 2:
        alpha = power_law([b.batch_size for b in best], [b.estimate for b in best])
    return LrBatch(best, alpha)
