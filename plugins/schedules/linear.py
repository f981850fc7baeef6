"""Linear warmup, then a straight line down to a floor."""

from __future__ import annotations

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


@attrs.frozen
class LinearOptions:
    #: Steps over which the learning rate ramps up linearly to its peak (default 0).
    warmup_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: The warmup as a fraction of max_steps (e.g. 0.1), instead of warmup_steps.
    warmup_fraction: float | None = attrs.field(default=None, validator=fraction_validator)
    #: Where the line ends (an absolute learning rate).
    min_lr: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    #: The step at which the decay reaches min_lr; default: the run's max_steps.
    decay_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    def __attrs_post_init__(self) -> None:
        check_warmup(self)


def linear(options: LinearOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """Warm up linearly, then decay linearly from the peak to min_lr at decay_steps."""
    peak, floor = ctx.base_lr, options.min_lr
    warmup = warmup_length(options.warmup_steps, options.warmup_fraction, ctx.max_steps, 0)
    check_floor(floor, peak, "linear decay")
    end = options.decay_steps or ctx.max_steps

    def lr_at(step: int) -> float:
        if step < warmup:
            return warming(step, warmup, peak)
        if step >= end:
            return floor
        return peak + (floor - peak) * (step - warmup) / max(1, end - warmup)

    return lr_at


@hookimpl
def register_schedules(register):
    register("linear", linear, options=LinearOptions)
