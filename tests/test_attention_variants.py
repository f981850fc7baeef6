"""Attention variants together: the attention x positional x norm-placement matrix of
whole models, causal == eager == manual, dropout, and linear attention refusing ALiBi.

What concerns one variant alone is in its own module under tests/plugins/.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tel_core.errors import ConfigError
from tel_core.model.decoder import build_model
from tel_core.train.experiment import experiment_from_dict

VOCAB, T = 23, 8
#: Every variant, and the options that change its code path.
ATTENTION = {
    "causal": {"name": "causal"},
    "causal-gqa": {"name": "causal", "n_kv_heads": 2},
    "causal-mqa-window": {"name": "causal", "n_kv_heads": 1, "window": 3},
    "causal-qknorm": {"name": "causal", "qk_norm": True},
    "eager": {"name": "eager"},
    "eager-gqa-window-qknorm": {"name": "eager", "n_kv_heads": 2, "window": 3, "qk_norm": True},
    "manual": {"name": "manual"},
    "manual-window": {"name": "manual", "window": 3},
    "linear": {"name": "linear", "chunk_size": 3},
}
POSITIONAL = ["learned", "sinusoidal", "rope", "alibi", "nope"]
PLACEMENT = ["pre", "post", "sandwich"]


def tiny_model(registry, tiny, attention, positional="learned", placement="pre", **model):
    tiny["data"]["block_size"] = T
    tiny["model"].update(
        d_model=16,
        n_layers=2,
        n_heads=4,
        attention=dict(attention),
        positional=positional,
        norm_placement=placement,
        **model,
    )
    exp = experiment_from_dict(tiny, registry)
    torch.manual_seed(0)
    return build_model(exp.model, VOCAB, T, registry)


@pytest.mark.parametrize("placement", PLACEMENT)
@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize("attention", ATTENTION)
def test_matrix_shapes_gradients_and_causality(registry, tiny, attention, positional, placement):
    if attention == "linear" and positional == "alibi":
        pytest.skip("linear attention cannot take a score bias (tested below)")
    model = tiny_model(registry, tiny, ATTENTION[attention], positional, placement)
    idx = torch.randint(VOCAB, (2, T), generator=torch.Generator().manual_seed(1))

    logits = model(idx)
    assert logits.shape == (2, T, VOCAB)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        base = model(idx)
        for t in (0, 3, T - 1):
            changed = idx.clone()
            changed[:, t] = (changed[:, t] + 1) % VOCAB
            out = model(changed)
            assert torch.equal(out[:, :t], base[:, :t]), f"a position before {t} saw the future"
            assert not torch.allclose(out[:, t:], base[:, t:]), "the change had no effect"


def test_linear_attention_refuses_a_score_bias(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "linear"}, "alibi")
    with pytest.raises(ConfigError, match=r"attention 'linear' .* cannot add .* score bias"):
        model(torch.zeros(1, T, dtype=torch.long))


@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize(
    "options",
    [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1, "window": 3}, {"qk_norm": True}],
    ids=["mha", "gqa", "mqa-window", "qknorm"],
)
def test_causal_eager_and_manual_compute_the_same(registry, tiny, positional, options):
    """The fast path, the written-out maths and the hand-written backward agree."""
    models = {
        name: tiny_model(registry, copy.deepcopy(tiny), {"name": name, **options}, positional)
        for name in ("causal", "eager", "manual")
    }
    state = models["causal"].state_dict()
    for model in models.values():
        model.load_state_dict(state)  # the same weights, whatever the init drew
    idx = torch.randint(VOCAB, (3, T), generator=torch.Generator().manual_seed(2))
    out, grads = {}, {}
    for name, model in models.items():
        out[name] = model(idx)
        out[name].square().mean().backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters()}
    for name in ("eager", "manual"):
        torch.testing.assert_close(out[name], out["causal"], atol=1e-5, rtol=0)
        for n, g in grads[name].items():
            torch.testing.assert_close(g, grads["causal"][n], atol=1e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("options", [{}, {"window": 3}], ids=["full", "window"])
@pytest.mark.parametrize("attention", ["causal", "eager", "manual"])
def test_attention_dropout_acts_in_training_only(registry, tiny, attention, options):
    model = tiny_model(registry, tiny, {"name": attention, **options}, dropout=0.5)
    # The attention's own dropout alone: the embedding, residual and MLP dropouts are off.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    idx = torch.randint(VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    model.eval()
    assert torch.equal(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))
