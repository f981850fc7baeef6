"""linear: the attention contract (refusing a score bias in one line); the quadratic form."""

from __future__ import annotations

import pytest
import torch

from tel_core.testing import check_attention
from tel_plugins.attention.linear import feature_map, linear_attention


@pytest.mark.parametrize("options", [None, {"chunk_size": 3}, {"n_kv_heads": 2, "qk_norm": True}])
def test_conforms(registry, options):
    check_attention("linear", options, registry=registry)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_linear_attention_equals_its_quadratic_form(chunk_size):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    fq, fk = feature_map(q), feature_map(k)
    weights = (fq @ fk.transpose(-2, -1)).tril()  # (B, nh, T, T), causal
    reference = (weights / weights.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(linear_attention(fq, fk, v, chunk_size, eps=0.0), reference)
