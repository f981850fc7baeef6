"""Stochastic gradient descent with (optionally Nesterov) momentum."""

from __future__ import annotations

import attrs
import torch

from tel_core.plugin import ParameterGroups, hookimpl


@attrs.frozen
class SGDOptions:
    #: Peak learning rate; the schedule scales it step by step.
    lr: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    #: Momentum factor (0: plain SGD).
    momentum: float = attrs.field(default=0.9, validator=attrs.validators.ge(0))
    #: Use Nesterov momentum.
    nesterov: bool = False
    #: L2 penalty, applied to weight matrices only.
    weight_decay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    #: Also decay embedding tables (and so a tied LM head).
    decay_embeddings: bool = False

    def __attrs_post_init__(self) -> None:
        # Checked here, not left to torch: a bad value is then one line naming the file.
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov = true needs momentum > 0")


def sgd(options: SGDOptions, params: ParameterGroups, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay (L2) on weight matrices only."""
    groups = params.with_weight_decay(options.weight_decay, options.decay_embeddings)
    return torch.optim.SGD(groups, lr=lr, momentum=options.momentum, nesterov=options.nesterov)


@hookimpl
def register_optimizers(register):
    register("sgd", sgd, options=SGDOptions)
