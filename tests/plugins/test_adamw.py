"""adamw: the optimizer contract, and which parameters it decays."""

import pytest
from torch import nn

from tel_core.config_loader import experiment_from_dict
from tel_core.errors import ConfigError
from tel_core.model import parameter_groups
from tel_core.testing import check_optimizer
from tel_plugins.optimizers.adamw import AdamWOptions, adamw


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


def decays(optimizer):
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize(
    "options", [None, {"decay_embeddings": True}, {"weight_decay": 0.0, "betas": [0.5, 0.0]}]
)
def test_conforms(registry, options):
    check_optimizer("adamw", options, registry=registry)


def test_decays_matrices_only_by_default():
    model = Toy()
    opt = adamw(AdamWOptions(weight_decay=0.1), parameter_groups(model), lr=1e-3)
    d = decays(opt)
    assert d[id(model.linear.weight)] == 0.1
    assert d[id(model.embed.weight)] == 0.0
    assert d[id(model.linear.bias)] == d[id(model.norm.weight)] == 0.0
    assert len(d) == len(list(model.parameters()))


def test_can_decay_embeddings():
    model = Toy()
    opt = adamw(AdamWOptions(decay_embeddings=True), parameter_groups(model), lr=1e-3)
    assert decays(opt)[id(model.embed.weight)] == 0.1


def test_betas_outside_0_1_are_a_config_error_not_a_torch_traceback(registry):
    # The kit found this: torch's ValueError used to escape from the middle of `tel run`.
    with pytest.raises(ConfigError, match=r"\[optimizer\] .*betas must each be in \[0, 1\)"):
        experiment_from_dict(
            {"name": "x", "optimizer": {"name": "adamw", "betas": [0.9, 1.0]}}, registry
        )
