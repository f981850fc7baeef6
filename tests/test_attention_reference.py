"""The softmax attention variants against a reference written head by head and position by
position in plain loops, sharing no code with them: the mask (causal, and the sliding
window's exact width), grouped keys and values (GQA, MQA), QK-norm and a score bias.

The variants share their projections, grouping and mask (``tel_plugins.attention.
multihead``), so comparing them with each other could not catch a mistake there.
"""

from __future__ import annotations

import math

import pytest
import torch

from tel_core.config.loader import options_from_dict
from tel_core.config.schema import Selection
from tel_core.model.nn import Positional, record_attention
from tel_core.registry.registry import Registry
from tel_core.testing import model_context

B, T, D, H = 2, 9, 24, 6
HS = D // H


class HeadSlopes(Positional):
    """A score bias of its own: -slope_h * (i - j), a different slope for each head."""

    def score_bias(self, seq_len: int) -> torch.Tensor:
        distance = torch.arange(seq_len).view(-1, 1) - torch.arange(seq_len).view(1, -1)
        slopes = torch.linspace(0.1, 0.6, H).view(H, 1, 1)
        return -slopes * distance.clamp(min=0).float()


def layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """Over the last dimension, written out (the reference shares no code with the norm)."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def reference(attn, x: torch.Tensor, options: dict, positional: Positional) -> torch.Tensor:
    """y = out(concat_h softmax(q_h k_g / sqrt(hs) + bias, over the allowed keys) v_g)."""
    n_kv = options.get("n_kv_heads") or H
    window = options.get("window") or T
    W, b = attn.qkv.weight, attn.qkv.bias
    kv = n_kv * HS
    bias = positional.score_bias(T)
    y = torch.zeros(B, T, D)
    for h in range(H):
        g = h // (H // n_kv)  # consecutive query heads share one key/value head
        rows = {
            "q": slice(h * HS, (h + 1) * HS),
            "k": slice(D + g * HS, D + (g + 1) * HS),
            "v": slice(D + kv + g * HS, D + kv + (g + 1) * HS),
        }
        q, k, v = (x @ W[r].T + b[r] for r in rows.values())  # each (B, T, hs)
        if options.get("qk_norm"):
            q, k = layer_norm(q, attn.q_norm), layer_norm(k, attn.k_norm)
        for i in range(T):
            seen = slice(max(0, i - window + 1), i + 1)  # itself and window - 1 before it
            scores = (k[:, seen] @ q[:, i].unsqueeze(-1)).squeeze(-1) / math.sqrt(HS)
            if bias is not None:
                scores = scores + bias[h, i, seen]
            weights = torch.softmax(scores, dim=-1)  # (B, keys seen)
            y[:, i, h * HS : (h + 1) * HS] = (weights.unsqueeze(-1) * v[:, seen]).sum(1)
    return y @ attn.out.weight.T + attn.out.bias


OPTIONS = {
    "mha": {},
    "gqa": {"n_kv_heads": 3},
    "gqa-2": {"n_kv_heads": 2},
    "mqa": {"n_kv_heads": 1},
    "window-1": {"window": 1},
    "window-3": {"window": 3},
    "window-T": {"window": T},
    "qk-norm": {"qk_norm": True},
    "gqa-window-qk-norm": {"n_kv_heads": 2, "window": 4, "qk_norm": True},
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    """One registry for the module: its tests only read it."""
    registry = Registry()
    registry.load_entry_points()
    return registry


def build(registry, name: str, options: dict):
    component = registry.get("attention", name)
    selection = Selection(name, options_from_dict(component, options))
    torch.manual_seed(0)
    attn = registry.build("attention", selection, model_context(d_model=D, n_heads=H))
    with torch.no_grad():  # biases and norm gains away from 0 and 1, so that they count
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return attn.eval()


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "score-bias"])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", ["causal", "eager", "manual"])
def test_equals_the_per_head_reference(registry, name, options, bias):
    attn = build(registry, name, OPTIONS[options])
    positional = HeadSlopes() if bias else Positional()
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(attn, x, OPTIONS[options], positional)
        torch.testing.assert_close(attn(x, positional), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [1, 2, 3, T - 1, T, T + 4])
@pytest.mark.parametrize("name", ["causal", "eager", "manual"])
def test_a_window_of_w_sees_itself_and_exactly_w_minus_1_earlier_positions(registry, name, window):
    attn = build(registry, name, {"window": window})
    x = torch.randn(1, T, D, generator=torch.Generator().manual_seed(2))
    with record_attention(attn) as probabilities, torch.no_grad():
        attn(x, Positional())
    seen = probabilities[""][0][0] > 0  # (H, T, T): where each query puts any weight
    for i in range(T):
        expected = [max(0, i - window + 1) <= j <= i for j in range(T)]
        for h in range(H):
            assert seen[h, i].tolist() == expected, f"query {i}, head {h}"
