"""A constant learning rate, after an optional linear warmup."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from tel_core.plugin import ScheduleContext, hookimpl
from tel_plugins.schedules.warmup import check_warmup, fraction_validator, warming, warmup_length


@attrs.frozen
class ConstantOptions:
    #: Steps over which the learning rate ramps up linearly to its peak (default 0).
    warmup_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: The warmup as a fraction of max_steps (e.g. 0.1), instead of warmup_steps.
    warmup_fraction: float | None = attrs.field(default=None, validator=fraction_validator)

    def __attrs_post_init__(self) -> None:
        check_warmup(self)


def constant(options: ConstantOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """The optimizer's lr at every step (ramped up linearly over warmup_steps first)."""
    warmup = warmup_length(options.warmup_steps, options.warmup_fraction, ctx.max_steps, 0)

    def lr_at(step: int) -> float:
        return warming(step, warmup, ctx.base_lr) if step < warmup else ctx.base_lr

    return lr_at


@hookimpl
def register_schedules(register):
    register("constant", constant, options=ConstantOptions)
