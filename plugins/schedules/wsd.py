"""Warmup-stable-decay: ramp up, hold the peak, then decay over the last part of the run.

The hold lets one run be continued or cut short cheaply (only the decay is redone), and
on small language models it matches or beats cosine at the same budget (Hägele et al.,
2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import attrs

from tel_core.plugin import ScheduleContext, hookimpl
from tel_plugins.schedules.warmup import (
    check_floor,
    check_warmup,
    fraction_validator,
    warming,
    warmup_length,
)


@attrs.frozen
class WsdOptions:
    #: Steps over which the learning rate ramps up linearly to its peak (default 0).
    warmup_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: The warmup as a fraction of max_steps (e.g. 0.01), instead of warmup_steps.
    warmup_fraction: float | None = attrs.field(default=None, validator=fraction_validator)
    #: The share of max_steps, at the end, over which the rate decays to min_lr.
    decay_fraction: float = attrs.field(
        default=0.2,
        validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)],
    )
    #: The shape of the decay: "linear", "cosine", or "sqrt" (1 - sqrt of the progress,
    #: which drops fastest at the end).
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"
    #: Where the decay ends (an absolute learning rate).
    min_lr: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        check_warmup(self)


SHAPES: dict[str, Callable[[float], float]] = {
    # Each maps the decay's progress in [0, 1] to the share of (peak - floor) left.
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
    "sqrt": lambda t: 1.0 - math.sqrt(t),
}


def wsd(options: WsdOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """Warm up, hold the peak, then decay to min_lr over the last decay_fraction of the run."""
    peak, floor = ctx.base_lr, options.min_lr
    warmup = warmup_length(options.warmup_steps, options.warmup_fraction, ctx.max_steps, 0)
    check_floor(floor, peak, "decay")
    decay = max(1, round(options.decay_fraction * ctx.max_steps))
    start = max(warmup, ctx.max_steps - decay)  # the first step of the decay
    shape = SHAPES[options.decay_shape]

    def lr_at(step: int) -> float:
        if step < warmup:
            return warming(step, warmup, peak)
        if step < start:
            return peak
        # Progress reaches 1 at the run's last step, so the last update uses min_lr.
        progress = min(1.0, (step - start + 1) / max(1, ctx.max_steps - start))
        return floor + shape(progress) * (peak - floor)

    return lr_at


@hookimpl
def register_schedules(register):
    register("wsd", wsd, options=WsdOptions)
