"""The loop's one seam to the probes: ``Probes`` holds the selected ones and calls them.

The training loop calls ``after_backward(step)`` inside the step (gradients in place,
before clipping) and ``after_step(step, result)`` once the step is done; everything else
is here: which probes are due, the moments (``tel_core.probes.contract``), timing them, and
routing what they report to ``metrics.jsonl``, the loggers and ``probes/``. On a step
with no probe due both calls return at once: no tensor is touched, no hook installed.

The first step of a fresh run also gets a sanity line: its loss against ln(vocab_size),
the loss of a uniform guess, which a freshly initialised model should be close to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core import ui
from tel_core.config.schema import Experiment
from tel_core.errors import ConfigError, PluginError
from tel_core.probes.contract import EvalBatch, Probe, ProbeContext, Report, Update
from tel_core.probes.records import ProbeRecords
from tel_core.registry.registry import Registry

#: How far the first loss may stray from ln(vocab_size) before the sanity line warns.
SANITY_BAND = (0.8, 1.25)


@attrs.frozen
class Selected:
    """One selected probe: its name, the built probe, and its steps."""

    key: str  # "<index>.<name>": where its state lives in a checkpoint
    name: str
    probe: Probe
    every: int

    def due(self, step: int, last: int) -> bool:
        return step % self.every == 0 or step == last


def build_probes(experiment: Experiment, registry: Registry, ctx: ProbeContext) -> list[Selected]:
    """Build every probe the experiment selects (on every process)."""
    selected = []
    for i, selection in enumerate(experiment.probes):
        every = getattr(selection.options, "every", None)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise PluginError(
                f"probe {selection.name!r}: its options need an int option 'every' >= 1 "
                f"(subclass tel_core.plugin.ProbeOptions), got {every!r}"
            )
        probe = registry.build("probe", selection, ctx)
        if not isinstance(probe, Probe):
            raise PluginError(
                f"probe {selection.name!r}: the factory returned a {type(probe).__name__}, "
                f"not a tel_core.plugin.Probe"
            )
        selected.append(Selected(f"{i}.{selection.name}", selection.name, probe, every))
    return selected


class Probes:
    """The selected probes, called on their steps; what they report goes to ``log`` (the
    loop's metrics.jsonl and loggers), to every logger in ``loggers`` and to ``probes/``."""

    def __init__(
        self,
        selected: Sequence[Selected],
        ctx: ProbeContext,
        *,
        val_batch: tuple[torch.Tensor, torch.Tensor],
        autocast: Callable[[], AbstractContextManager],
        log: Callable[[int, dict[str, float]], None],
        loggers: Sequence[Any],
        run_dir: Path,
        name: str,
    ) -> None:
        self.selected = list(selected)
        self.ctx = ctx
        self.val_batch = val_batch
        self.autocast = autocast
        self.log = log
        self.loggers = loggers  # the loop's list: filled once the loggers are built
        self.records = ProbeRecords(run_dir)
        self.name = name
        #: Seconds spent in probes so far (moments and routing): kept out of tokens/s.
        self.seconds = 0.0
        self._due: list[Selected] = []
        self._report = Report()
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def __bool__(self) -> bool:
        return bool(self.selected)

    # -- the loop's calls ----------------------------------------------------------------

    def after_backward(self, step: int) -> None:
        """Inside the step: gradients in place, before clipping and the update."""
        if not self.selected:
            return
        last = self.ctx.max_steps
        self._due = [s for s in self.selected if s.due(step, last)]
        if not self._due:
            return
        started = time.perf_counter()
        for s in self._due:
            self._take(s, s.probe.after_backward(step))
        self._finish_timing(started)

    def after_step(self, step: int, result: Any) -> None:
        """Once the step is done (``result``: the loop's StepResult): the update and
        evaluation moments of the probes due, then their report is published."""
        if step == 1:  # a fresh run's first step (a resumed run starts later)
            self.sanity(result.loss)
        due, self._due = self._due, []
        if not due:
            return
        started = time.perf_counter()
        update = Update(
            step=step,
            loss=result.loss,
            grad_norm=result.grad_norm,
            lr=result.lr,
            clipped=result.clipped,
            updated=result.updated,
            last=step == self.ctx.max_steps,
        )
        for s in due:
            self._take(s, s.probe.after_update(update))
        evaluating = [s for s in due if type(s.probe).evaluate is not Probe.evaluate]
        if evaluating:
            self._evaluate(step, evaluating)
        report, self._report = self._report, Report()
        if self.ctx.world.is_main and report:
            self._publish(step, report)
        self._finish_timing(started)

    # -- moments -----------------------------------------------------------------------------

    def _evaluate(self, step: int, due: list[Selected]) -> None:
        model = self.ctx.model
        if self._inputs is None:  # moved to the device once
            self._inputs = tuple(t.to(self.ctx.device) for t in self.val_batch)
        batch = EvalBatch(step, model, *self._inputs)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.autocast():
                for s in due:
                    self._take(s, s.probe.evaluate(batch))
        finally:
            model.train(was_training)

    def _take(self, selected: Selected, report: Report | None) -> None:
        if report is None:
            return
        if not isinstance(report, Report):
            raise PluginError(
                f"probe {selected.name!r} returned a {type(report).__name__}, not a "
                f"tel_core.plugin.Report or None"
            )
        if problems := report.problems():
            raise PluginError(f"probe {selected.name!r}: {'; '.join(problems)}")
        self._report.add(report)

    def _finish_timing(self, started: float) -> None:
        if self.ctx.device.type == "cuda":  # kernels the probes queued are their time too
            torch.cuda.synchronize(self.ctx.device)
        self.seconds += time.perf_counter() - started

    # -- routing (rank 0) ------------------------------------------------------------------

    def _publish(self, step: int, report: Report) -> None:
        if report.scalars:
            self.log(step, dict(report.scalars))
        for name, histogram in report.histograms.items():
            self.records.histogram(step, name, histogram)
            for logger in self.loggers:
                logger.log_histogram(step, name, histogram)
        for name, image in report.images.items():
            self.records.image(step, name, image)
            for logger in self.loggers:
                logger.log_image(step, name, image)
        for name, text in report.texts.items():
            self.records.text(step, name, text)
            for logger in self.loggers:
                logger.log_text(step, name, text)
        for warning in report.warnings:
            self.records.text(step, "warning", warning)
            ui.info(f"{self.name}: warning at step {step}: {warning}")

    def sanity(self, loss: float) -> None:
        """The start-of-run line: the first loss against that of a uniform guess."""
        if self.ctx.world.is_main:
            ui.info(f"{self.name}: {sanity_line(loss, self.ctx.vocab_size)}")

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {s.key: s.probe.state_dict() for s in self.selected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Each probe continues from its state; a probe new to the run starts afresh."""
        for s in self.selected:
            if s.key in state:
                s.probe.load_state_dict(state[s.key])


def sanity_line(loss: float, vocab_size: int) -> str:
    """How the first step's loss compares with ln(vocab_size), and a warning when far off.

    A freshly initialised model predicts nearly uniformly, so its loss is about
    ln(vocab_size). Far above, the initialisation is too large (confident and wrong);
    far below, the model can see the token it predicts (targets not shifted).
    """
    uniform = math.log(vocab_size)
    ratio = loss / uniform
    line = (
        f"first loss {loss:.4f} against ln(vocab_size {vocab_size}) = {uniform:.4f} (x{ratio:.3f})"
    )
    low, high = SANITY_BAND
    if not math.isfinite(loss) or ratio > high:
        return (
            f"warning: {line}: far above a uniform guess; is the initialisation too large "
            f"(logits far from zero)?"
        )
    if ratio < low:
        return (
            f"warning: {line}: far below a uniform guess before any training; can the model "
            f"see the tokens it predicts (targets not shifted)?"
        )
    return f"{line}: as expected of a fresh initialisation"


def check_probes(experiment: Experiment, registry: Registry, where: Callable[[int], str]) -> None:
    """Run every selected probe's ``check`` at load time; ``where(i)`` locates errors."""
    from tel_core.probes.contract import ProbeSetup

    setup = ProbeSetup(experiment, registry)
    for i, selection in enumerate(experiment.probes):
        try:
            registry.check("probe", selection, setup)
        except ConfigError as exc:
            raise ConfigError(f"{where(i)} (probe {selection.name!r}): {exc}") from None
