"""What every schedule shares: ``warmup_steps`` or ``warmup_fraction`` of the run, and a
floor that must lie below the peak."""

from __future__ import annotations

from typing import Any

import attrs

from tel_core.plugin import ConfigError


def fraction_validator(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value}")


def check_warmup(options: Any) -> None:
    """Raise ValueError if both ways of giving the warmup are set."""
    if options.warmup_steps is not None and options.warmup_fraction:
        raise ValueError("set warmup_steps or warmup_fraction, not both")


def warmup_length(steps: int | None, fraction: float | None, max_steps: int, default: int) -> int:
    """Warmup steps: ``fraction`` of ``max_steps`` if given, else ``steps`` (or ``default``)."""
    if fraction:
        return round(fraction * max_steps)
    return default if steps is None else steps


def warming(step: int, warmup: int, peak: float) -> float:
    """The learning rate at a warmup step: a linear ramp that reaches ``peak`` at ``warmup``."""
    return peak * (step + 1) / (warmup + 1)


def check_floor(floor: float, peak: float, schedule: str) -> None:
    """A ``min_lr`` above the peak would make the decay climb: surely not what was meant."""
    if floor > peak:
        raise ConfigError(
            f"[schedule] min_lr ({floor:g}) is above the peak learning rate, optimizer.lr "
            f"({peak:g}): the {schedule} would climb; set min_lr below it"
        )
