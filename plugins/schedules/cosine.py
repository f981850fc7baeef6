"""Linear warmup, then cosine decay to a floor (GPT-3, nanoGPT)."""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from tel_core.plugin import ScheduleContext, hookimpl
from tel_plugins.schedules.warmup import (
    check_floor,
    check_warmup,
    fraction_validator,
    warming,
    warmup_length,
)

DEFAULT_WARMUP = 100


@attrs.frozen
class CosineOptions:
    #: Steps over which the learning rate ramps up linearly to its peak (default 100,
    #: unless warmup_fraction is given).
    warmup_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: The warmup as a fraction of max_steps (e.g. 0.1), instead of warmup_steps.
    warmup_fraction: float | None = attrs.field(default=None, validator=fraction_validator)
    #: The floor the cosine decays to (an absolute learning rate, not a fraction).
    min_lr: float = attrs.field(default=1e-4, validator=attrs.validators.ge(0))
    #: The step at which the decay reaches min_lr; default: the run's max_steps.
    decay_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    def __attrs_post_init__(self) -> None:
        check_warmup(self)


def cosine(options: CosineOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """Warm up linearly for warmup_steps, then follow a half cosine down to min_lr."""
    peak, floor = ctx.base_lr, options.min_lr
    warmup = warmup_length(
        options.warmup_steps, options.warmup_fraction, ctx.max_steps, DEFAULT_WARMUP
    )
    check_floor(floor, peak, "cosine")
    end = options.decay_steps or ctx.max_steps

    def lr_at(step: int) -> float:
        if step < warmup:
            return warming(step, warmup, peak)
        if step >= end:
            return floor
        progress = (step - warmup) / max(1, end - warmup)
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)

    return lr_at


@hookimpl
def register_schedules(register):
    register("cosine", cosine, options=CosineOptions)
