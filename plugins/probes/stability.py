"""Loss and gradient-norm spikes, counted every step against running averages.

Each step's loss and gradient norm (before clipping) are compared with their running
averages (exponential, weight ``beta`` on the past) once ``warmup`` steps have set
them. A loss above ``loss_ratio`` times its average is a loss spike; a gradient norm
above ``grad_ratio`` times its average, a gradient spike; a non-finite loss or gradient
norm is counted apart. Each event is a text line with its step (``stability/event``);
the counts so far are reported at every event, every ``summary_every`` steps and at
the end:

- ``stability/loss_spikes``, ``stability/grad_spikes``, ``stability/nonfinite``;
- ``stability/clipped``: steps whose gradient was clipped, and ``stability/clip_rate``,
  their share of the steps so far;
- ``stability/loss_avg``, ``stability/grad_norm_avg``: the running averages.

A spike's own value does not enter the average, so one spike does not hide the next.
Costs a few float operations per step: no tensor is touched.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from tel_core.plugin import Probe, ProbeContext, ProbeOptions, Report, Update, hookimpl

_above_one = attrs.validators.gt(1.0)


@attrs.frozen(kw_only=True)
class StabilityOptions(ProbeOptions):
    #: Look at every this many steps (1: every step, as spikes are single steps).
    every: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: Weight of the past in the running averages.
    beta: float = attrs.field(
        default=0.95, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
    )
    #: Steps looked at before spikes are counted, while the averages settle.
    warmup: int = attrs.field(default=20, validator=attrs.validators.ge(0))
    #: A loss spike: the loss above this many times its running average.
    loss_ratio: float = attrs.field(default=1.2, validator=_above_one)
    #: A gradient spike: the gradient norm above this many times its running average.
    grad_ratio: float = attrs.field(default=3.0, validator=_above_one)
    #: Also report the counts every this many steps (0: only at events and at the end).
    summary_every: int = attrs.field(default=50, validator=attrs.validators.ge(0))


COUNTS = ("loss_spikes", "grad_spikes", "nonfinite", "clipped", "seen")


class Stability(Probe):
    """Loss and gradient-norm spikes against running averages, non-finite steps, clipping."""

    def __init__(self, options: StabilityOptions, ctx: ProbeContext) -> None:
        self.options = options
        self.counts = dict.fromkeys(COUNTS, 0)
        self.loss_avg: float | None = None
        self.grad_avg: float | None = None

    def after_update(self, update: Update) -> Report | None:
        o, counts = self.options, self.counts
        counts["seen"] += 1
        counts["clipped"] += int(update.clipped)
        events = []
        if not (math.isfinite(update.loss) and math.isfinite(update.grad_norm)):
            counts["nonfinite"] += 1
            events.append(
                f"step {update.step}: non-finite loss {update.loss} or gradient norm "
                f"{update.grad_norm}"
            )
        else:
            settled = counts["seen"] > o.warmup and self.loss_avg is not None
            loss_spike = settled and update.loss > o.loss_ratio * self.loss_avg
            grad_spike = settled and update.grad_norm > o.grad_ratio * self.grad_avg
            if loss_spike:
                counts["loss_spikes"] += 1
                events.append(self._event(update.step, "loss", update.loss, self.loss_avg))
            if grad_spike:
                counts["grad_spikes"] += 1
                events.append(
                    self._event(update.step, "gradient norm", update.grad_norm, self.grad_avg)
                )
            if not loss_spike:
                self.loss_avg = _average(self.loss_avg, update.loss, o.beta)
            if not grad_spike:
                self.grad_avg = _average(self.grad_avg, update.grad_norm, o.beta)
        summary = o.summary_every and update.step % o.summary_every == 0
        if not (events or summary or update.last):
            return None
        report = Report(scalars=self._scalars())
        if events:
            report.texts["stability/event"] = "; ".join(events)
        return report

    @staticmethod
    def _event(step: int, what: str, value: float, average: float) -> str:
        return (
            f"step {step}: {what} spike: {value:.4g}, {value / average:.2f} x its running "
            f"average {average:.4g}"
        )

    def _scalars(self) -> dict[str, float]:
        c = self.counts
        scalars: dict[str, float] = {f"stability/{k}": c[k] for k in COUNTS if k != "seen"}
        scalars["stability/clip_rate"] = c["clipped"] / max(1, c["seen"])
        if self.loss_avg is not None:
            scalars["stability/loss_avg"] = self.loss_avg
            scalars["stability/grad_norm_avg"] = self.grad_avg
        return scalars

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "loss_avg": self.loss_avg, "grad_avg": self.grad_avg}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = {k: int(state["counts"][k]) for k in COUNTS}
        self.loss_avg, self.grad_avg = state["loss_avg"], state["grad_avg"]


def _average(average: float | None, value: float, beta: float) -> float:
    return value if average is None else beta * average + (1 - beta) * value


@hookimpl
def register_probes(register):
    register("stability", Stability, options=StabilityOptions)
