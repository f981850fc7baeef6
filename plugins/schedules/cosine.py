"""Linear warmup, then cosine decay to a floor (GPT-3, nanoGPT)."""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from tel_core import hookimpl
from tel_core.errors import ConfigError
from tel_core.interfaces import ScheduleContext


@attrs.frozen
class CosineOptions:
    #: Steps over which the learning rate ramps up linearly to its peak.
    warmup_steps: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    #: The floor the cosine decays to (an absolute learning rate, not a fraction).
    min_lr: float = attrs.field(default=1e-4, validator=attrs.validators.ge(0))
    #: The step at which the decay reaches min_lr; default: the run's max_steps.
    decay_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )


def cosine(options: CosineOptions, ctx: ScheduleContext) -> Callable[[int], float]:
    """Warm up linearly for warmup_steps, then follow a half cosine down to min_lr."""
    peak, floor, warmup = ctx.base_lr, options.min_lr, options.warmup_steps
    if floor > peak:  # a "decay" that climbs: surely not what the experiment means
        raise ConfigError(
            f"[schedule] min_lr ({floor:g}) is above the peak learning rate, optimizer.lr "
            f"({peak:g}): the cosine would climb; set min_lr below it"
        )
    end = options.decay_steps or ctx.max_steps

    def lr_at(step: int) -> float:
        if step < warmup:
            return peak * (step + 1) / (warmup + 1)
        if step >= end:
            return floor
        progress = (step - warmup) / max(1, end - warmup)
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)

    return lr_at


@hookimpl
def register_schedules(register):
    register("cosine", cosine, options=CosineOptions)
