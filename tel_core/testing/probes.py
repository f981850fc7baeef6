"""``check_probe``: a probe looks and reports, and never touches what it looks at.

The kit trains a tiny model of tel's own skeleton for a few steps and offers the probe
every moment of every step (as a probe with ``every = 1`` would get them), checking what
it hands back and that the run is exactly what it would be without it.
"""

from __future__ import annotations

import io
import math
from typing import Any

import torch
from torch import nn

from tel_core.data.batching import IGNORE_INDEX
from tel_core.errors import TelError
from tel_core.model.decoder import build_model
from tel_core.probes.contract import EvalBatch, Probe, ProbeContext, ProbeSetup, Report, Update
from tel_core.registry.registry import Component, Registry
from tel_core.testing.subject import Subject, check_options, fail, subject
from tel_core.train.distributed import Distributed
from tel_core.train.experiment import experiment_from_dict

VOCAB, BLOCK, ROWS, STEPS = 32, 16, 4, 4

#: The experiment the kit builds its model from: two layers, 32 wide, built-in parts.
KIT_EXPERIMENT: dict[str, Any] = {
    "name": "tel-kit",
    "seed": 0,
    "data": {"block_size": BLOCK},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 4},
    "loggers": [],
}


def check_probe(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    model: dict[str, Any] | None = None,
) -> None:
    """Check a probe against the ``register_probes`` contract.

    Builds it with ``factory(options, ProbeContext(...))`` for a tiny model (``model``:
    changes to its ``[model]`` table, e.g. ``{"attention": "eager"}``) and checks: its
    options have an int ``every`` >= 1; its ``check`` (if any) accepts the experiment; a
    ``tel_core.plugin.Probe``; over four training steps, each moment returns a ``Report``
    or None with valid names, Python numbers, ``Histogram``s, uint8 images and text;
    no moment changes the parameters, the gradients, the model's mode or torch's random
    state, or leaves a hook installed; two runs give the same reports; and a probe
    restored from ``state_dict`` (through a ``weights_only`` checkpoint) after step 2
    reports steps 3 and 4 exactly as one that never stopped.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("probe", component, options, registry)
    check_options(s)
    experiment = experiment_from_dict(
        {**KIT_EXPERIMENT, "model": {**KIT_EXPERIMENT["model"], **(model or {})}},
        s.registry,
        label="check_probe",
    )
    with s.check("its options have an int option 'every' >= 1"):
        every = getattr(s.options, "every", None)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            fail(f"every is {every!r}; subclass tel_core.plugin.ProbeOptions")
    if s.component.check is not None:
        with s.check("its check(options, setup) accepts the kit's experiment"):
            try:
                s.component.check(s.options, ProbeSetup(experiment, s.registry))
            except (ValueError, TelError) as exc:
                fail(f"it rejects the kit's model ({exc}); pass model={{...}} it accepts")
    with s.check("builds a tel_core.plugin.Probe"):
        _Timeline(s, experiment).build_probe()
    with s.check("reports, and changes nothing, at every moment"):
        straight = _Timeline(s, experiment).run()
    with s.check("two runs report the same"):
        again = _Timeline(s, experiment).run()
        if (diff := _difference(straight, again)) is not None:
            fail(f"the second run differs: {diff}")
    with s.check("resumes from state_dict"):
        resumed = _Timeline(s, experiment).run(swap_after=2)
        if (diff := _difference(straight[2:], resumed[2:])) is not None:
            fail(f"after load_state_dict, steps 3 and 4 differ from a run never stopped: {diff}")


class _Timeline:
    """A tiny model trained for STEPS steps with the probe watching every moment."""

    def __init__(self, s: Subject, experiment: Any) -> None:
        self.s = s
        torch.manual_seed(0)
        self.model = build_model(experiment.model, VOCAB, BLOCK, s.registry)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.ctx = ProbeContext(self.model, VOCAB, BLOCK, STEPS, torch.device("cpu"), Distributed())
        generator = torch.Generator().manual_seed(1)
        self.batches = [
            torch.randint(VOCAB, (ROWS, BLOCK + 1), generator=generator) for _ in range(STEPS)
        ]
        tokens = torch.randint(VOCAB, (ROWS, BLOCK + 1), generator=generator)
        targets = tokens[:, 1:].clone()
        targets[-1, BLOCK // 2 :] = IGNORE_INDEX  # a padded row
        self.val = (tokens[:, :-1], targets)

    def build_probe(self) -> Probe:
        return self.s.build_a(Probe, "a tel_core.plugin.Probe", self.ctx)

    def run(self, swap_after: int | None = None) -> list[dict[str, Any]]:
        """Each step's reports (moment -> plain data)."""
        probe = self.build_probe()
        steps = []
        for step in range(1, STEPS + 1):
            batch = self.batches[step - 1]
            logits = self.model(batch[:, :-1])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            loss.backward()
            reports = {"after_backward": self._moment(probe.after_backward, step)}
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads).item()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            update = Update(step, loss.item(), norm, 0.1, False, True, step == STEPS)
            reports["after_update"] = self._moment(probe.after_update, update)
            self.model.eval()
            with torch.no_grad():
                batch_ = EvalBatch(step, self.model, *self.val)
                reports["evaluate"] = self._moment(probe.evaluate, batch_, training=False)
            self.model.train()
            steps.append(reports)
            if step == swap_after:
                probe = self._restored(probe)
        return steps

    def _restored(self, probe: Probe) -> Probe:
        buffer = io.BytesIO()
        try:
            torch.save(probe.state_dict(), buffer)
            buffer.seek(0)
            state = torch.load(buffer, weights_only=True)
        except Exception as exc:
            fail(
                f"state_dict() does not survive a weights_only checkpoint "
                f"({type(exc).__name__}: {exc}); keep to numbers, str, lists, dicts, tensors"
            )
        restored = self.build_probe()
        restored.load_state_dict(state)
        return restored

    def _moment(self, call: Any, arg: Any, training: bool = True) -> dict[str, Any] | None:
        name = getattr(call, "__name__", "a moment")
        before = _Untouched(self.model)
        report = call(arg)
        problem = before.changed(self.model, training)
        if problem:
            fail(f"{name} {problem}")
        if report is None:
            return None
        if not isinstance(report, Report):
            fail(f"{name} returned a {type(report).__name__}, not a Report or None")
        if problems := report.problems():
            fail(f"{name}: {'; '.join(problems)}")
        return {
            "scalars": report.scalars,
            "histograms": {k: (h.edges, h.counts) for k, h in report.histograms.items()},
            "images": {k: v.tobytes() for k, v in report.images.items()},
            "texts": report.texts,
            "warnings": report.warnings,
        }


class _Untouched:
    """What a probe must leave as it found it."""

    def __init__(self, model: nn.Module) -> None:
        self.params = [p.detach().clone() for p in model.parameters()]
        self.grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        self.rng = torch.get_rng_state()
        self.hooks = _hooks(model)

    def changed(self, model: nn.Module, training: bool) -> str | None:
        if any(not torch.equal(a, p) for a, p in zip(self.params, model.parameters(), strict=True)):
            return "changed the model's parameters"
        for old, p in zip(self.grads, model.parameters(), strict=True):
            if (old is None) != (p.grad is None) or (
                old is not None and not torch.equal(old, p.grad)
            ):
                return "changed the gradients"
        if not torch.equal(self.rng, torch.get_rng_state()):
            return "drew from torch's random generator (training would draw other numbers)"
        if _hooks(model) != self.hooks:
            return "left a hook installed (remove every hook before returning)"
        if any(m.training != training for m in model.modules()):
            return f"changed the model's mode (it was {'training' if training else 'eval'})"
        return None


def _hooks(model: nn.Module) -> int:
    attributes = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, a, {})) for m in model.modules() for a in attributes)


def _difference(a: list[Any], b: list[Any]) -> str | None:
    """Where two runs' reports first differ (NaN equal to NaN), or None."""
    for step, (x, y) in enumerate(zip(a, b, strict=True), start=1):
        for moment in x:
            if not _same(x[moment], y[moment]):
                return f"{moment} of step {step}: {x[moment]!r} against {y[moment]!r}"[:400]
    return None


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(i, j) for i, j in zip(x, y, strict=True))
    return x == y
