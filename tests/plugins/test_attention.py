"""attention: entropy, distance, sinks, distance histograms and heatmaps of attention,
and the load-time refusal of an attention that cannot hand out its probabilities."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from tel_core import hookimpl
from tel_core.errors import ConfigError
from tel_core.testing import check_probe
from tel_core.train.experiment import experiment_from_dict
from tel_plugins.probes.attention import distance_histogram, heatmap, layer_stats

T = 8


@pytest.mark.parametrize(
    ("options", "model"),
    [
        (None, None),
        ({"per_head": False, "heatmaps": False, "rows": 1}, {"attention": "eager"}),
        ({"colormap": "gray", "distance_bins": 3}, {"positional": "alibi"}),
    ],
)
def test_conforms(registry, options, model):
    check_probe("attention", options, registry=registry, model=model)


def uniform(batch=1, heads=1):
    """Every query spreads its attention evenly over the keys it may see."""
    p = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    return p.expand(batch, heads, T, T)


def previous_token(batch=1, heads=1):
    """Every query (but the first) looks only at the token before it."""
    p = torch.zeros(T, T)
    p[0, 0] = 1
    p[torch.arange(1, T), torch.arange(T - 1)] = 1
    return p.expand(batch, heads, T, T)


def all_real(batch=1):
    return torch.ones(batch, T, dtype=torch.bool)


def test_uniform_attention():
    stats = layer_stats(uniform(), all_real())
    queries = range(T)
    assert stats["entropy"].item() == pytest.approx(sum(math.log2(i + 1) for i in queries) / T)
    assert stats["distance"].item() == pytest.approx(sum(i / 2 for i in queries) / T)
    assert stats["sink"].item() == pytest.approx(sum(1 / (i + 1) for i in range(1, T)) / (T - 1))


def test_previous_token_attention():
    stats = layer_stats(previous_token(heads=2), all_real())
    assert stats["entropy"].tolist() == [0.0, 0.0]
    assert stats["distance"].tolist() == pytest.approx([(T - 1) / T] * 2)
    assert stats["sink"].tolist() == pytest.approx([1 / (T - 1)] * 2)  # query 1 only
    histogram = distance_histogram(previous_token(heads=2), all_real(), bins=T)
    assert histogram.edges == tuple(float(e) for e in range(T + 1))
    assert histogram.counts == pytest.approx([1 / T, (T - 1) / T] + [0] * (T - 2))


def test_padding_queries_are_left_out():
    p = torch.cat([uniform(), previous_token()])  # row 1: previous token, padded after 4
    real = torch.ones(2, T, dtype=torch.bool)
    real[1, 4:] = False
    stats = layer_stats(p.unsqueeze(1)[:, 0], real)
    queries = [math.log2(i + 1) for i in range(T)] + [0.0] * 4
    assert stats["entropy"].item() == pytest.approx(sum(queries) / (T + 4))
    assert distance_histogram(p, real, bins=2).total == pytest.approx(1.0)


def test_a_heatmap_puts_heads_side_by_side():
    import matplotlib

    image = heatmap(
        torch.cat([uniform(heads=1), previous_token(heads=1)], dim=1)[0],
        matplotlib.colormaps["gray"],
    )
    assert image.shape == (T, 2 * T + 2, 3) and image.dtype.name == "uint8"
    assert (image[:, T : T + 2] == 255).all()  # the gap
    assert (image[0, 0] == 255).all() and (image[0, 1] == 0).all()  # p = 1, and p = 0


class _Opaque(nn.Module):
    """A third-party attention that knows nothing of recording."""

    def __init__(self, options, ctx):
        super().__init__()
        self.proj = nn.Linear(ctx.d_model, ctx.d_model)

    def forward(self, x, positional):
        return self.proj(x)


class _OpaquePlugin:
    @hookimpl
    def register_attention(self, register):
        register("opaque", _Opaque)


def test_an_attention_that_cannot_record_is_refused_at_load_time(registry, tiny):
    registry.add_plugin(_OpaquePlugin(), name="opaque")
    tiny["model"]["attention"] = "opaque"
    tiny["probes"] = [{"name": "stability"}, {"name": "attention", "heatmaps": False}]
    with pytest.raises(ConfigError) as excinfo:
        experiment_from_dict(tiny, registry, label="x.toml")
    assert str(excinfo.value) == (
        "x.toml [probes.1] (probe 'attention'): cannot record attention probabilities of "
        "blocks.0.attn (_Opaque: it does not hand out attention probabilities); "
        "blocks.1.attn (_Opaque: it does not hand out attention probabilities)"
    )
    tiny["probes"] = [{"name": "grad_norms"}]  # other probes do not care
    experiment_from_dict(tiny, registry)


def test_heatmaps_without_matplotlib_name_the_extra(registry, tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    tiny["probes"] = [{"name": "attention"}]
    needs = r"\(probe 'attention'\): heatmaps = true needs matplotlib: pip install 'tel\[probes\]'"
    with pytest.raises(ConfigError, match=needs):
        experiment_from_dict(tiny, registry)
    tiny["probes"] = [{"name": "attention", "heatmaps": False}]
    experiment_from_dict(tiny, registry)


def test_a_collapsed_layer_is_a_warning(tel_train, capsys):
    run = tel_train(steps=2, probes=[{"name": "attention", "every": 2, "collapse_bits": 50.0}])
    out = capsys.readouterr().out
    assert "tiny: warning at step 2: attention collapse in layer 0: mean entropy" in out
    text = (run.run_dir / "probes" / "text.jsonl").read_text()
    assert text.count('"name": "warning"') == 2  # both layers
