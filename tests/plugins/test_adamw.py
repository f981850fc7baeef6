"""adamw: the optimizer contract, and which parameters it decays."""

import pytest
import torch
from torch import nn

from tel_core.errors import ConfigError
from tel_core.model.decoder import parameter_groups
from tel_core.testing import check_optimizer
from tel_core.train.experiment import experiment_from_dict
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
    "options",
    [
        None,
        {"decay_embeddings": True},
        {"weight_decay": 0.0, "betas": [0.5, 0.0]},
        {"fused": False},
    ],
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


@pytest.mark.parametrize(("fused", "expected"), [("auto", True), (True, True), (False, False)])
def test_fused_auto_takes_torchs_fused_kernel_where_it_has_one(fused, expected):
    # torch has a fused AdamW for CPU tensors (since 2.4) as for CUDA ones.
    opt = adamw(AdamWOptions(fused=fused), parameter_groups(Toy()), lr=1e-3)
    assert bool(opt.defaults["fused"]) is expected


def test_fused_and_unfused_take_the_same_step_to_rounding():
    model, twin = Toy(), Toy()
    twin.load_state_dict(model.state_dict())
    updates = []
    for m, fused in ((model, True), (twin, False)):
        opt = adamw(AdamWOptions(fused=fused), parameter_groups(m), lr=1e-2)
        for p in m.parameters():
            p.grad = torch.ones_like(p) * 0.3
        opt.step()
        updates.append([p.detach().clone() for p in m.parameters()])
    for a, b in zip(*updates, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_an_integer_is_not_a_boolean_for_fused(registry):
    with pytest.raises(ConfigError, match=r"fused.*expected one of 'auto', True, False, got 1"):
        experiment_from_dict({"name": "x", "optimizer": {"name": "adamw", "fused": 1}}, registry)
