"""The kit itself, training side: optimizers, schedules, loggers, correct and flawed."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest
import torch

from tel_core.registry.interfaces import Logger, LoggerContext, ParameterGroups, ScheduleContext
from tel_core.registry.registry import Component, Source
from tel_core.testing import ConformanceError, check_logger, check_optimizer, check_schedule


@attrs.frozen
class Flaw:
    #: Which part of the contract to break ("" for none).
    flaw: str = ""
    #: Peak learning rate.
    lr: float = 0.05


def component(kind: str, factory) -> Component:
    source = Source(plugin="test", module=__name__)
    return Component(kind=kind, name="flawed", factory=factory, options=Flaw, source=source)


# -- optimizer ------------------------------------------------------------------------


class FixedLR(torch.optim.SGD):
    """Reads the learning rate it was built with, never its param groups'."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.fixed = lr

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.fixed)


class Forgetful(torch.optim.SGD):
    def load_state_dict(self, state_dict) -> None:
        pass  # momentum starts over after a resume


def optimizer(options: Flaw, params: ParameterGroups, lr: float):
    groups = params.with_weight_decay(0.01)
    if options.flaw == "no_vectors":
        groups = [{"params": params.matrices + params.embeddings}]
    if options.flaw == "fixed_lr":
        return FixedLR(groups, lr)
    if options.flaw == "closure":
        return torch.optim.LBFGS(params.matrices + params.embeddings + params.vectors, lr=lr)
    if options.flaw == "forgetful":
        return Forgetful(groups, lr=lr, momentum=0.9)
    if options.flaw == "ascent":
        return torch.optim.SGD(groups, lr=lr, maximize=True)
    if options.flaw == "function":
        return lambda: None
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("no_vectors", "holds every parameter exactly once: parameters missing from its param"),
        ("fixed_lr", "with every group's lr at 0, a step still moved parameters"),
        ("closure", "step() without a closure: raised"),
        ("forgetful", "a step after load_state_dict differs from the uninterrupted one"),
        ("ascent", "lowers a simple loss: 20 steps at lr 0.05 took a toy loss from"),
        ("function", "a value of type function; expected a torch.optim.Optimizer"),
    ],
)
def test_optimizer_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_optimizer(component("optimizer", optimizer), {"flaw": flaw})
    assert str(excinfo.value).startswith("optimizer 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_optimizer_passes():
    check_optimizer(component("optimizer", optimizer))


# -- schedule -------------------------------------------------------------------------


def schedule(options: Flaw, ctx: ScheduleContext):
    calls = []

    def lr_at(step: int):
        calls.append(step)
        value = ctx.base_lr * (1 - step / ctx.max_steps)
        if options.flaw == "stateful":  # decays with every call, not with the step
            value = ctx.base_lr * 0.99 ** len(calls)
        if options.flaw == "negative":
            value -= ctx.base_lr / 2
        if options.flaw == "tensor":
            return torch.tensor(value)
        if options.flaw == "one_step":
            value = ctx.base_lr * step / (ctx.max_steps - 1)
        return 0.0 if options.flaw == "zero" else value

    return lr_at


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("stateful", "gets another lr when steps are asked in reverse: keep no state"),
        ("negative", "a learning rate is finite and not negative"),
        ("tensor", "step 0 gave tensor(0.0010); return a float"),
        ("zero", "the learning rate is 0 at every one of 200 steps"),
        ("one_step", "a one-step run: raised ZeroDivisionError"),
    ],
)
def test_schedule_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_schedule(component("schedule", schedule), {"flaw": flaw})
    assert str(excinfo.value).startswith("schedule 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_schedule_passes():
    check_schedule(component("schedule", schedule))


# -- logger ---------------------------------------------------------------------------


class FileLogger(Logger):
    """Metrics to run_dir/log.txt, a line per step to standard output."""

    def __init__(self, options: Flaw, ctx: LoggerContext) -> None:
        self.flaw = options.flaw
        self.file = open(ctx.run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115
        self.last: int | None = None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.flaw == "finite_only" and not all(math.isfinite(v) for v in metrics.values()):
            raise ValueError("not a finite number")
        if self.flaw == "mutate":
            metrics.pop("train/loss", None)  # type: ignore[attr-defined]
        self.file.write(f"{step} {dict(metrics)}\n")
        sys.stdout.write(f"step {step}\n")
        if self.flaw != "no_flush":
            sys.stdout.flush()
        self.last = step

    def log_text(self, step: int, name: str, text: str) -> None:
        self.file.write(text.encode("ascii" if self.flaw == "ascii" else "utf-8").decode())

    def log_histogram(self, step, name, histogram) -> None:
        if self.flaw == "histogram_arrays":
            histogram.counts.sum()  # a tuple of floats, not a numpy array
        self.file.write(f"{step} {name} {histogram.total}\n")

    def log_image(self, step, name, image) -> None:
        if self.flaw == "scribble":
            image[0, 0] = 0  # drawing on the probe's image

    def close(self) -> None:
        if self.flaw == "needs_log":
            self.file.write(f"last step {self.last + 1}\n")  # type: ignore[operator]
        self.file.flush()
        if self.flaw != "leave_open":
            self.file.close()


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("finite_only", "log(3, {train/loss, train/lr, ...}): raised ValueError"),
        ("mutate", "log() changed the metrics mapping"),
        ("no_flush", "wrote to standard output and did not flush it in close()"),
        ("leave_open", "close() left log.txt open"),
        ("needs_log", "close() before any log (a run that fails at once): raised TypeError"),
        ("ascii", "log_text: raised UnicodeEncodeError"),
        ("histogram_arrays", "log_histogram: raised AttributeError"),
        ("scribble", "log_image() changed the image it was handed"),
    ],
)
def test_logger_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_logger(component("logger", FileLogger), {"flaw": flaw})
    assert str(excinfo.value).startswith("logger 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_logger_passes_and_writes_into_the_run_directory(tmp_path: Path):
    check_logger(component("logger", FileLogger), run_dir=tmp_path)
    text = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert "'train/tokens': 10000000000000" in text and "☃ ü 漢" in text
