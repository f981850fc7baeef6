"""ALiBi (Press et al., 2022): no position embeddings, a distance penalty on the scores.

Head h adds -m_h * (i - j) to the score of query i for key j, with slopes m_h falling
geometrically across heads: some heads look far back, others only nearby. Nothing is
learned and nothing is added to the token embeddings.
"""

from __future__ import annotations

import math

import attrs
import torch

from tel_core.plugin import ModelContext, Positional, hookimpl


@attrs.frozen
class ALiBiOptions:
    pass


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The paper's slopes: 2^(-8/n), 2^(-16/n), ... for n a power of two; otherwise those of
    the power of two below n, topped up with every other slope of the one above."""

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    below = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(below) + geometric(2 * below)[0::2][: n_heads - below]
    return torch.tensor(slopes)


class ALiBi(Positional):
    """A per-head penalty on scores by distance: bias[h, i, j] = -slope_h * (i - j)."""

    def __init__(self, options: ALiBiOptions, ctx: ModelContext) -> None:
        super().__init__()
        slopes = alibi_slopes(ctx.n_heads).view(-1, 1, 1)  # (nh, 1, 1)
        self.register_buffer("slopes", slopes, persistent=False)  # derived, not learned

    def score_bias(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        # Built per call rather than cached: (nh, block, block) floats add up at long blocks.
        device = self.slopes.device
        queries = torch.arange(offset, offset + seq_len, device=device)
        keys = torch.arange(offset + seq_len, device=device)
        distance = (queries.unsqueeze(1) - keys.unsqueeze(0)).clamp(min=0)  # (T, offset + T)
        return -self.slopes * distance  # (nh, T, offset + T), broadcasts over the batch


@hookimpl
def register_positional(register):
    register("alibi", ALiBi, options=ALiBiOptions)
