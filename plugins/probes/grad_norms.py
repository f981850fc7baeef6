"""Gradient norms per layer and part, and how far each step moves the weights.

Parameters are grouped by the module that owns them: within a block by the block's part
(``blocks.0.attn``, ``blocks.0.ffn``, ``blocks.0.norm_attn``, ...), and the block as a
whole (``blocks.0``); outside the blocks by the top-level module (``token_embedding``,
``positional``, ``final_norm``, ``lm_head``). With tied embeddings the head is the
embedding's tensor, so its gradient is part of ``token_embedding``'s.

- ``grad_norm/<group>``: the L2 norm of the group's gradient after the backward pass
  (after DDP's all-reduce and fp16 unscaling, before clipping);
- ``update_ratio/<group>``: ||w_after - w_before|| / ||w_before|| over the step: the
  update-to-weight ratio (about 1e-3 per step is the usual rule of thumb for Adam);
- ``grad_hist/<layer>`` (``histograms = true``): the distribution of gradient values.
"""

from __future__ import annotations

import math

import attrs
import torch

from tel_core.plugin import Histogram, Probe, ProbeContext, ProbeOptions, Report, Update, hookimpl


@attrs.frozen(kw_only=True)
class GradNormsOptions(ProbeOptions):
    #: Also measure ||Δw|| / ||w|| after the update (copies the weights on the probe's steps).
    update_ratio: bool = True
    #: Also a histogram of each layer's gradient values.
    histograms: bool = False
    #: Bins of each histogram.
    bins: int = attrs.field(default=64, validator=attrs.validators.ge(1))


def group_of(name: str) -> tuple[str, str]:
    """(part, layer) of a parameter name: ("blocks.0.attn", "blocks.0") or, outside the
    blocks, the top-level module twice: ("token_embedding", "token_embedding")."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 2:
        return ".".join(parts[:3]), ".".join(parts[:2])
    return parts[0], parts[0]


class GradNorms(Probe):
    """Gradient norms of every layer's parts, embedding and head; update-to-weight ratios."""

    def __init__(self, options: GradNormsOptions, ctx: ProbeContext) -> None:
        self.options = options
        named = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.groups = [group_of(n) for n, _ in named]  # (part, layer) of each parameter
        self._before: list[torch.Tensor] | None = None

    def after_backward(self, step: int) -> Report:
        self._before = None
        if self.options.update_ratio:
            self._before = [p.detach().clone() for p in self.params]
        grads = [(i, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        if not grads:
            return Report()
        squares = torch.stack([g.detach().float().square().sum() for _, g in grads]).tolist()
        totals = self._by_group([i for i, _ in grads], squares)
        report = Report(
            scalars={f"grad_norm/{name}": math.sqrt(total) for name, total in totals.items()}
        )
        if self.options.histograms:
            by_layer: dict[str, list[torch.Tensor]] = {}
            for i, g in grads:
                by_layer.setdefault(self.groups[i][1], []).append(g.detach().flatten())
            for layer, pieces in by_layer.items():
                values = torch.cat(pieces).float().cpu().numpy()
                report.histograms[f"grad_hist/{layer}"] = Histogram.of(values, self.options.bins)
        return report

    def after_update(self, update: Update) -> Report | None:
        if self._before is None:
            return None
        before, self._before = self._before, None
        with torch.no_grad():
            pairs = list(zip(self.params, before, strict=True))
            moved = torch.stack([(p.float() - w.float()).square().sum() for p, w in pairs])
            sizes = torch.stack([w.float().square().sum() for w in before])
        everything = list(range(len(self.params)))
        moved_by = self._by_group(everything, moved.tolist())
        size_by = self._by_group(everything, sizes.tolist())
        ratios = {
            name: math.sqrt(moved_by[name] / size_by[name]) if size_by[name] > 0 else 0.0
            for name in moved_by
        }
        return Report(scalars={f"update_ratio/{name}": r for name, r in ratios.items()})

    def _by_group(self, indices: list[int], values: list[float]) -> dict[str, float]:
        """Per-parameter ``values`` (of the parameters at ``indices``) summed by part and layer."""
        totals: dict[str, float] = {}
        for i, value in zip(indices, values, strict=True):
            part, layer = self.groups[i]
            totals[part] = totals.get(part, 0.0) + value
            if layer != part:
                totals[layer] = totals.get(layer, 0.0) + value
        return totals


@hookimpl
def register_probes(register):
    register("grad_norms", GradNorms, options=GradNormsOptions)
