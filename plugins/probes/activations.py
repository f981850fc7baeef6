"""Statistics of the residual stream after each block, on the fixed validation batch.

Per block ``i`` (its output, the residual stream that block ``i + 1`` reads), over the
real (non-padding) positions:

- ``act/rms/layer<i>``, ``act/mean/layer<i>``, ``act/std/layer<i>``: root mean square,
  mean and (population) standard deviation of every value;
- ``act/max_abs/layer<i>``: the largest magnitude;
- ``act/kurtosis/layer<i>``: each position's kurtosis across the features,
  E[(x - mean)^4] / var^2, averaged over positions: 3 for Gaussian features, far more when
  a few outlier features carry most of the magnitude.

Forward hooks on the blocks are installed for this one forward pass and removed after it.
They sit on the plain model in eval mode without gradients, so activation checkpointing
(which reruns blocks in the backward pass) and ``torch.compile`` (which skips hooks added
to a compiled module) change nothing: the probe sees each block exactly once.
"""

from __future__ import annotations

import attrs
import torch

from tel_core.plugin import EvalBatch, Probe, ProbeContext, ProbeOptions, Report, hookimpl


@attrs.frozen(kw_only=True)
class ActivationsOptions(ProbeOptions):
    #: Rows of the fixed validation batch to run through the model.
    rows: int = attrs.field(default=8, validator=attrs.validators.ge(1))


def residual_stats(x: torch.Tensor) -> dict[str, float]:
    """The statistics of ``x`` (N positions, C features), in float64."""
    x = x.double()
    centred = x - x.mean(dim=-1, keepdim=True)
    variance = centred.square().mean(dim=-1)
    kurtosis = centred.pow(4).mean(dim=-1) / variance.square().clamp_min(1e-30)
    values = torch.stack(
        [x.square().mean().sqrt(), x.mean(), x.std(correction=0), x.abs().max(), kurtosis.mean()]
    ).tolist()
    return dict(zip(("rms", "mean", "std", "max_abs", "kurtosis"), values, strict=True))


class Activations(Probe):
    """Per block: the residual stream's RMS, mean, std, max |x| and kurtosis (outlier features)."""

    def __init__(self, options: ActivationsOptions, ctx: ProbeContext) -> None:
        self.rows = options.rows
        self.blocks = list(ctx.model.blocks)  # tel's model skeleton: one Block per layer

    def evaluate(self, batch: EvalBatch) -> Report:
        batch = batch.first(self.rows)
        outputs: list[torch.Tensor] = []
        hooks = [
            block.register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
            for block in self.blocks
        ]
        try:
            batch.forward()
        finally:
            for hook in hooks:
                hook.remove()
        real = batch.mask  # (B, T)
        scalars = {}
        for i, out in enumerate(outputs):
            for stat, value in residual_stats(out[real]).items():
                scalars[f"act/{stat}/layer{i}"] = value
        return Report(scalars=scalars)


@hookimpl
def register_probes(register):
    register("activations", Activations, options=ActivationsOptions)
