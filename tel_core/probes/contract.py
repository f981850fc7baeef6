"""The probe contract: what a probe sees of a run, when, and what it hands back.

A probe measures something inside a training run (per-layer gradient norms, activation
statistics, attention entropy, loss spikes) on its own steps: every ``every`` steps and
on the last one. On those steps the loop offers three moments, in this order:

1. ``after_backward(step)``: the step's gradients are in the ``.grad`` of the model's
   parameters (summed over micro-batches, all-reduced over processes, unscaled under
   fp16), before clipping and the update;
2. ``after_update(update)``: the optimizer has stepped (or skipped a non-finite step);
   ``update`` holds the step's loss, gradient norm and learning rate;
3. ``evaluate(batch)``: the model in eval mode, without gradients, under the run's
   autocast, with a fixed validation batch (the same rows at every step).

``ctx.model`` (and ``batch.model``) is the plain model: never the DDP wrapper or the
``torch.compile``'d module, so forward hooks on its submodules fire and
``tel_core.plugin.record_attention`` works (dynamo skips hooks added to a compiled module's
submodules after compilation; see the README). A probe hands back a ``Report`` (or None):
scalars go into ``metrics.jsonl`` and to every logger, histograms and images to every
logger that takes them and into the run directory's ``probes/`` folder, text to the
loggers and ``probes/text.jsonl``.

A probe never changes the model, its gradients, its mode or any random state, and leaves
no hook installed after a moment: a run with probes trains exactly like one without
(``tel_core.testing.check_probe`` checks this). Under data parallel every process calls
its probes (so a probe may use ``ctx.world``'s collectives); rank 0 writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs

from tel_core.registry.media import Histogram, check_image, valid_name

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from tel_core.config.schema import Experiment
    from tel_core.registry.registry import Registry


@attrs.frozen(kw_only=True)
class ProbeOptions:
    """The options every probe has; a probe's options class subclasses this one."""

    #: Run on every this many steps, and on the run's last step.
    every: int = attrs.field(default=50, validator=attrs.validators.ge(1))


class World(Protocol):
    """What a probe may use of the run's processes (``tel_core.train.distributed.Distributed``
    is one): under data parallel every process calls its probes; in a world of one the
    collectives hand back what they are given."""

    @property
    def rank(self) -> int: ...
    @property
    def world_size(self) -> int: ...
    @property
    def is_main(self) -> bool:
        """Rank 0, the process that writes."""
        ...

    def barrier(self) -> None: ...
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every process (in place)."""
        ...

    def max(self, value: int, device: torch.device) -> int:
        """The largest ``value`` of any process."""
        ...

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, indexed by rank."""
        ...


@attrs.frozen
class ProbeContext:
    """What a probe's factory receives."""

    model: nn.Module  # the plain model (not DDP-wrapped, not compiled)
    vocab_size: int
    block_size: int
    max_steps: int
    device: torch.device
    world: World  # rank, world size, and the collectives (sum, max, gather)


@attrs.frozen
class Update:
    """The step a probe's ``after_update`` looks back on."""

    step: int
    loss: float  # over every process
    grad_norm: float  # before clipping
    lr: float
    clipped: bool
    updated: bool  # False when the update was skipped (a non-finite loss or gradient)
    last: bool  # the run's last step


@attrs.frozen
class EvalBatch:
    """The fixed validation batch a probe's ``evaluate`` sees, with the model in eval mode."""

    step: int
    model: nn.Module
    inputs: torch.Tensor  # (B, T) token ids, on the model's device
    targets: torch.Tensor  # (B, T), tel_core.plugin.IGNORE_INDEX at padding

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool: True at real (non-padding) positions."""
        from tel_core.data.batching import IGNORE_INDEX

        return self.targets != IGNORE_INDEX

    def forward(self) -> torch.Tensor:
        """The model's logits (B, T, vocab_size) for ``inputs``."""
        return self.model(self.inputs)

    def first(self, rows: int) -> EvalBatch:
        """The batch cut to its first ``rows`` rows (all of them if it has fewer)."""
        return attrs.evolve(self, inputs=self.inputs[:rows], targets=self.targets[:rows])


@attrs.define
class Report:
    """What a probe hands back from a moment. Names are slash-separated paths such as
    ``grad_norm/blocks.0.attn`` (see ``tel_core.registry.media.NAME``)."""

    #: Python ints and floats (not tensors): one record in metrics.jsonl per step.
    scalars: dict[str, float] = attrs.Factory(dict)
    histograms: dict[str, Histogram] = attrs.Factory(dict)
    #: uint8 numpy arrays (height, width, 3 or 4), written as PNG.
    images: dict[str, np.ndarray] = attrs.Factory(dict)
    #: Text events (``log_text`` of every logger, and probes/text.jsonl).
    texts: dict[str, str] = attrs.Factory(dict)
    #: Lines shown to the person at the terminal, such as "attention collapsed in layer 2".
    warnings: list[str] = attrs.Factory(list)

    def __bool__(self) -> bool:
        return bool(self.scalars or self.histograms or self.images or self.texts or self.warnings)

    def add(self, other: Report) -> None:
        self.scalars.update(other.scalars)
        self.histograms.update(other.histograms)
        self.images.update(other.images)
        self.texts.update(other.texts)
        self.warnings.extend(other.warnings)

    def problems(self) -> list[str]:
        """What is wrong with this report, if anything (a probe's bug)."""
        found = []
        for field, values in (
            ("scalars", self.scalars),
            ("histograms", self.histograms),
            ("images", self.images),
            ("texts", self.texts),
        ):
            found += [f"{field}: invalid name {name!r}" for name in values if not valid_name(name)]
        for name, value in self.scalars.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                found.append(f"scalar {name!r} is a {type(value).__name__}, not an int or float")
        for name, value in self.histograms.items():
            if not isinstance(value, Histogram):
                found.append(f"histogram {name!r} is a {type(value).__name__}, not a Histogram")
        for name, value in self.images.items():
            try:
                check_image(value)
            except ValueError as exc:
                found.append(f"image {name!r}: {exc}")
        for name, value in self.texts.items():
            if not isinstance(value, str):
                found.append(f"text {name!r} is a {type(value).__name__}, not a str")
        if not all(isinstance(w, str) for w in self.warnings):
            found.append("warnings must be strings")
        return found


class Probe:
    """Base class of probes: override the moments you need; each returns a Report or None."""

    def after_backward(self, step: int) -> Report | None:
        """Gradients in place, before clipping and the update."""
        return None

    def after_update(self, update: Update) -> Report | None:
        """After the optimizer step (or its skipping)."""
        return None

    def evaluate(self, batch: EvalBatch) -> Report | None:
        """The model in eval mode, without gradients, on the fixed validation batch."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as if never stopped (ints, floats, str,
        lists and dicts of them, tensors): saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


@attrs.define
class ProbeSetup:
    """What a probe's ``check(options, setup)`` sees, at load time, before anything is built."""

    experiment: Experiment
    registry: Registry
    _model: Any = attrs.field(default=None, init=False, repr=False)

    def model(self) -> nn.Module:
        """The experiment's model on the meta device: every module, no memory, no data
        (the vocabulary size is a stand-in, since the tokenizer is not fitted yet)."""
        if self._model is None:
            import torch

            from tel_core.model.decoder import build_model

            cfg = self.experiment
            with torch.device("meta"):
                self._model = build_model(cfg.model, 256, cfg.data.block_size, self.registry)
        return self._model
