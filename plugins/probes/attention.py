"""Where attention looks, per layer and head, on the fixed validation batch.

With ``p[b, h, i, j]`` the weight query ``i`` gives key ``j <= i`` (recorded through
``tel_core.plugin.record_attention``), over the real query positions of the first ``rows``
rows, and each layer's mean over its heads:

- ``attn/entropy/layer<l>[/head<h>]``: -sum_j p log2 p, in bits (0: one key takes it
  all; log2(i + 1): spread evenly over every key query ``i`` may see);
- ``attn/distance/layer<l>[/head<h>]``: the mean attention distance sum_j p (i - j), in
  positions;
- ``attn/sink/layer<l>[/head<h>]``: the share of attention on the first token (an
  attention sink), over every query but the first (which can only see itself);
- ``attn/distance_hist/layer<l>``: a histogram of attention distances, each bin holding
  the share of the layer's attention at that distance;
- ``attn/heatmap/layer<l>``: the first row's (T, T) weights as a PNG, heads side by
  side, square-root scaled so that faint attention shows (needs matplotlib).

A layer whose mean entropy falls below ``collapse_bits`` is reported as a warning
(attention collapse: every query looking at one key).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch

from tel_core.plugin import (
    ConfigError,
    EvalBatch,
    Histogram,
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeSetup,
    Report,
    TelError,
    hookimpl,
    record_attention,
)

GAP = 2  # pixels between the heads of a heatmap


@attrs.frozen(kw_only=True)
class AttentionOptions(ProbeOptions):
    #: Rows of the fixed validation batch to record (each costs layers x heads x T x T numbers).
    rows: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    #: Report each head, not only each layer's mean over its heads.
    per_head: bool = True
    #: Bins of each layer's histogram of attention distances.
    distance_bins: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    #: A PNG heatmap per layer of the first row's attention (needs matplotlib).
    heatmaps: bool = True
    #: The matplotlib colormap of the heatmaps.
    colormap: str = "viridis"
    #: Warn when a layer's mean entropy falls below this many bits (attention collapse); 0: never.
    collapse_bits: float = attrs.field(default=0.25, validator=attrs.validators.ge(0))


def colormap(name: str):
    """The matplotlib colormap ``name``, or a one-line error saying what to install."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "heatmaps = true needs matplotlib: pip install 'tel[probes]' (or set heatmaps = false)"
        ) from None
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ConfigError(
            f"colormap {name!r} is not a matplotlib colormap; try viridis, magma, gray"
        ) from None


def check(options: AttentionOptions, setup: ProbeSetup) -> None:
    """At load time: the model's attention can hand out its probabilities (and matplotlib
    is there for heatmaps), so that a run does not fail at its first probe step."""
    if options.heatmaps:
        colormap(options.colormap)
    try:
        with record_attention(setup.model()):
            pass
    except TelError as exc:
        raise ConfigError(str(exc)) from None


def layer_stats(p: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-head entropy (bits), mean distance and first-token share of probabilities
    ``p`` (B, nh, T, T) over the real queries ``real`` (B, T)."""
    p = p.double()
    T = p.size(-1)
    position = torch.arange(T, device=p.device, dtype=p.dtype)
    distance = (position[:, None] - position[None, :]).clamp_min(0)  # (T, T): i - j
    entropy = -torch.special.xlogy(p, p).sum(-1) / math.log(2)  # (B, nh, T)
    mean_distance = (p * distance).sum(-1)  # (B, nh, T)
    weight = real[:, None, :].to(p.dtype).expand_as(entropy)  # (B, nh, T)
    queries = weight.sum(dim=(0, 2)).clamp_min(1)  # (nh,)
    later = weight[..., 1:]  # the first query can only look at the first token
    return {
        "entropy": (entropy * weight).sum(dim=(0, 2)) / queries,
        "distance": (mean_distance * weight).sum(dim=(0, 2)) / queries,
        "sink": (p[..., 1:, 0] * later).sum(dim=(0, 2)) / later.sum(dim=(0, 2)).clamp_min(1),
    }


def distance_histogram(p: torch.Tensor, real: torch.Tensor, bins: int) -> Histogram:
    """The share of attention at each distance (equal bins over 0 .. T), over every head
    and real query."""
    p = p.double() * real[:, None, :, None]  # padding queries weigh nothing
    T = p.size(-1)
    position = torch.arange(T, device=p.device)
    distance = (position[:, None] - position[None, :]).clamp_min(0)
    which = (distance * bins // T).expand_as(p).flatten()
    counts = torch.bincount(which, weights=p.flatten(), minlength=bins)[:bins]
    counts = counts / counts.sum().clamp_min(1e-30)
    return Histogram(np.linspace(0, T, bins + 1).tolist(), counts.tolist())


def heatmap(p: torch.Tensor, cmap) -> np.ndarray:
    """One row's probabilities (nh, T, T) as an RGB image, heads side by side."""
    nh, T, _ = p.shape
    scaled = p.float().clamp(0, 1).sqrt().cpu().numpy()
    image = np.full((T, nh * T + (nh - 1) * GAP, 3), 255, dtype=np.uint8)
    for h in range(nh):
        rgb = (cmap(scaled[h])[..., :3] * 255).round().astype(np.uint8)
        image[:, h * (T + GAP) : h * (T + GAP) + T] = rgb
    return image


class AttentionProbe(Probe):
    """Per layer and head: attention entropy, distance, sinks, distance histograms, heatmaps."""

    def __init__(self, options: AttentionOptions, ctx: ProbeContext) -> None:
        self.options = options
        self.cmap = colormap(options.colormap) if options.heatmaps else None
        with record_attention(ctx.model):  # names the layers that cannot record, now
            pass

    def evaluate(self, batch: EvalBatch) -> Report:
        batch = batch.first(self.options.rows)
        with record_attention(batch.model) as recorded:
            batch.forward()
        real = batch.mask
        report = Report()
        for layer, probabilities in enumerate(recorded.values()):
            p = probabilities[0]  # (B, nh, T, T): one forward pass
            for stat, per_head in layer_stats(p, real).items():
                values = per_head.tolist()
                report.scalars[f"attn/{stat}/layer{layer}"] = sum(values) / len(values)
                if self.options.per_head:
                    for h, value in enumerate(values):
                        report.scalars[f"attn/{stat}/layer{layer}/head{h}"] = value
            report.histograms[f"attn/distance_hist/layer{layer}"] = distance_histogram(
                p, real, self.options.distance_bins
            )
            if self.cmap is not None:
                report.images[f"attn/heatmap/layer{layer}"] = heatmap(p[0], self.cmap)
            entropy = report.scalars[f"attn/entropy/layer{layer}"]
            if entropy < self.options.collapse_bits:
                report.warnings.append(
                    f"attention collapse in layer {layer}: mean entropy {entropy:.3f} bits, "
                    f"below collapse_bits = {self.options.collapse_bits}"
                )
        return report


@hookimpl
def register_probes(register):
    register("attention", AttentionProbe, options=AttentionOptions, check=check)
