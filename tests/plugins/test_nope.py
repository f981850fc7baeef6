"""nope: the positional contract; no position information at all."""

from __future__ import annotations

import torch

from tel_core.model.nn import Positional
from tel_core.testing import check_positional, model_context
from tel_plugins.positional.nope import NoPE, NoPEOptions


def test_conforms(registry):
    check_positional("nope", registry=registry)


def test_changes_nothing():
    nope = NoPE(NoPEOptions(), model_context(n_layers=1, bias=False))
    x, q, k = torch.randn(2, 5, 32), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    assert nope.embed(x) is x
    assert nope.rotate(q, k) == (q, k)
    assert nope.score_bias(5) is None
    assert isinstance(nope, Positional) and not list(nope.parameters())
