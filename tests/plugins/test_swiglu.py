"""swiglu: the ffn contract; its hidden width, and its parameter count against the MLP."""

from __future__ import annotations

import math

import pytest
import torch

from tel_core.testing import check_ffn, model_context
from tel_plugins.ffn.mlp import MLP, MLPOptions
from tel_plugins.ffn.swiglu import SwiGLU, SwiGLUOptions, hidden_size


@pytest.mark.parametrize("options", [None, {"hidden": 50}, {"multiple_of": 1}])
def test_conforms(registry, options):
    check_ffn("swiglu", options, registry=registry)


def ctx(d_model: int):
    return model_context(d_model=d_model, n_layers=1, bias=False)


@pytest.mark.parametrize(
    ("d_model", "multiple_of", "expected"),
    [(128, 64, 384), (96, 64, 256), (768, 256, 2048), (128, 1, 342), (48, 8, 128)],
)
def test_default_hidden_is_eight_thirds_rounded_up(d_model, multiple_of, expected):
    assert hidden_size(SwiGLUOptions(multiple_of=multiple_of), d_model) == expected


def test_an_explicit_hidden_is_used_as_given():
    assert hidden_size(SwiGLUOptions(hidden=341), 128) == 341


def test_at_341_it_matches_the_gelu_mlp_within_a_row():
    mlp = MLP(MLPOptions(expansion=4), ctx(128))
    swiglu = SwiGLU(SwiGLUOptions(hidden=341), ctx(128))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mlp) == 2 * 128 * 512 == 131_072
    assert count(swiglu) == 3 * 128 * 341 == 130_944


def test_is_silu_of_the_gate_times_up():
    swiglu = SwiGLU(SwiGLUOptions(hidden=1), ctx(1))
    with torch.no_grad():
        swiglu.gate.weight.fill_(2.0)
        swiglu.up.weight.fill_(3.0)
        swiglu.down.weight.fill_(0.5)
        y = swiglu(torch.ones(1, 1, 1)).item()
        assert y == pytest.approx(0.5 * 2.0 / (1 + math.exp(-2.0)) * 3.0)  # silu(2) = 2σ(2)
        swiglu.gate.weight.zero_()  # silu(0) = 0: a closed gate lets nothing through
        assert swiglu(torch.randn(2, 3, 1)).abs().max().item() == 0.0
