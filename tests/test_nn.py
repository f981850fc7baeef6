"""Handing attention probabilities to whoever asks: ``tel_core.model.nn.record_attention``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tel_core import hookimpl
from tel_core.errors import TelError
from tel_core.model.decoder import build_model
from tel_core.model.nn import record_attention
from tel_core.train.experiment import experiment_from_dict

VOCAB, T = 19, 8
LAYERS = ["blocks.0.attn", "blocks.1.attn"]


def tiny_model(registry, tiny, attention, positional="learned", **model):
    tiny = copy.deepcopy(tiny)
    tiny["data"]["block_size"] = T
    tiny["model"].update(
        d_model=16, n_layers=2, n_heads=4, attention=attention, positional=positional, **model
    )
    torch.manual_seed(0)
    return build_model(experiment_from_dict(tiny, registry).model, VOCAB, T, registry).eval()


def idx(batch=3):
    return torch.randint(VOCAB, (batch, T), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("attention", ["causal", "eager", "manual", "linear"])
def test_recorded_probabilities_are_causal_distributions(registry, tiny, attention):
    model = tiny_model(registry, tiny, {"name": attention})
    with record_attention(model) as probs:
        model(idx())
    assert list(probs) == LAYERS
    for layer in LAYERS:
        (p,) = probs[layer]  # one forward pass, one tensor
        assert p.shape == (3, 4, T, T)
        torch.testing.assert_close(p.sum(-1), torch.ones(3, 4, T))
        assert (p >= 0).all()
        assert (p.triu(1) == 0).all(), "probability on a future position"


def test_a_window_leaves_only_the_last_window_positions(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "causal", "window": 3})
    with record_attention(model) as probs:
        model(idx())
    p = probs["blocks.0.attn"][0]
    assert (p.tril(-3) == 0).all()
    assert (p.diagonal(dim1=-2, dim2=-1) > 0).all()


@pytest.mark.parametrize("positional", ["rope", "alibi"])
def test_causal_records_what_eager_records_and_computes_the_same(registry, tiny, positional):
    causal = tiny_model(registry, tiny, {"name": "causal", "n_kv_heads": 2}, positional)
    eager = tiny_model(registry, tiny, {"name": "eager", "n_kv_heads": 2}, positional)
    eager.load_state_dict(causal.state_dict())
    x = idx()
    fast = causal(x)
    with record_attention(causal) as from_causal, record_attention(eager) as from_eager:
        recorded = causal(x)
        eager(x)
    torch.testing.assert_close(recorded, fast, atol=1e-5, rtol=0)  # only slower, not other
    for layer in LAYERS:
        torch.testing.assert_close(from_causal[layer][0], from_eager[layer][0])


def test_one_tensor_per_forward_and_nothing_once_closed(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "eager"})
    with record_attention(model) as probs:
        model(idx(1))
        model(idx(2))
    assert [p.size(0) for p in probs["blocks.0.attn"]] == [1, 2]
    model(idx())
    assert len(probs["blocks.0.attn"]) == 2
    assert not any(block.attn.recording for block in model.blocks)


def test_recording_stops_when_the_block_raises(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "eager"})
    with pytest.raises(RuntimeError, match="boom"), record_attention(model):
        raise RuntimeError("boom")
    assert not any(block.attn.recording for block in model.blocks)


def test_nested_recordings_both_receive(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "causal"})
    with record_attention(model) as outer:
        model(idx())
        with record_attention(model) as inner:
            model(idx())
        model(idx())
    assert len(outer["blocks.0.attn"]) == 3
    assert len(inner["blocks.0.attn"]) == 1
    assert not model.blocks[0].attn.recording


def test_detach_false_keeps_the_graph(registry, tiny):
    model = tiny_model(registry, tiny, {"name": "eager"})
    with record_attention(model, detach=False) as probs:
        model(idx())
    entropy = -(probs["blocks.1.attn"][0].clamp_min(1e-9).log() * probs["blocks.1.attn"][0])
    entropy.sum().backward()  # e.g. a probe that trains towards sharper attention
    assert model.blocks[1].attn.qkv.weight.grad is not None


class _OpaqueAttention(nn.Module):
    """A third-party attention that knows nothing of recording."""

    def __init__(self, options, ctx):
        super().__init__()
        self.proj = nn.Linear(ctx.d_model, ctx.d_model)

    def forward(self, x, positional):
        return self.proj(x)


class _OpaquePlugin:
    @hookimpl
    def register_attention(self, register):
        register("opaque", _OpaqueAttention)


def test_an_attention_that_cannot_record_is_named(registry, tiny):
    registry.add_plugin(_OpaquePlugin(), name="opaque")
    model = tiny_model(registry, tiny, {"name": "opaque"})
    with pytest.raises(TelError) as excinfo, record_attention(model):
        pass
    message = str(excinfo.value)
    assert message.startswith("cannot record attention probabilities of blocks.0.attn")
    assert "_OpaqueAttention: it does not hand out attention probabilities" in message


def test_a_model_without_attention_is_an_error():
    with pytest.raises(TelError, match="no attention layers"), record_attention(nn.Linear(2, 2)):
        pass
