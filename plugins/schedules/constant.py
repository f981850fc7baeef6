"""A constant learning rate, after an optional linear warmup."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from tel_core import hookimpl
from tel_core.interfaces import ScheduleContext


@attrs.frozen
class ConstantOptions:
    #: Steps over which the learning rate ramps up linearly to its peak.
    warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def constant(options: ConstantOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """The optimizer's lr at every step (ramped up linearly over warmup_steps first)."""
    warmup = options.warmup_steps

    def lr_at(step: int) -> float:
        return ctx.base_lr * min(1.0, (step + 1) / (warmup + 1)) if warmup else ctx.base_lr

    return lr_at


@hookimpl
def register_schedules(register):
    register("constant", constant, options=ConstantOptions)
