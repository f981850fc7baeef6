"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient."""

from __future__ import annotations

from typing import Literal

import attrs
import torch

from tel_core.plugin import ParameterGroups, hookimpl


def _betas(instance: object, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    # Checked here, not left to torch: a bad value is then one line naming the file and key.
    if not all(0.0 <= beta < 1.0 for beta in value):
        raise ValueError(f"betas must each be in [0, 1), got {list(value)}")


@attrs.frozen
class AdamWOptions:
    #: Peak learning rate; the schedule scales it step by step.
    lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0))
    #: Decoupled weight decay, applied to weight matrices only.
    weight_decay: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    #: Decay rates of the running averages of the gradient and of its square.
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.95), validator=_betas)
    #: Added to the denominator, for numerical stability.
    eps: float = attrs.field(default=1e-8, validator=attrs.validators.gt(0))
    #: Also decay embedding tables (and so a tied LM head), as nanoGPT does.
    decay_embeddings: bool = False
    #: torch's fused AdamW kernel: one pass over each tensor instead of a dozen. "auto":
    #: fused wherever torch has the kernel (CUDA and CPU); false: the per-tensor loop,
    #: whose numbers differ from the fused kernel's in the last bits.
    fused: Literal["auto", True, False] = "auto"


def adamw(options: AdamWOptions, params: ParameterGroups, lr: float) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices only (and embeddings if decay_embeddings)."""
    groups = params.with_weight_decay(options.weight_decay, options.decay_embeddings)
    tensors = [p for group in groups for p in group["params"]]
    fused = options.fused is True or (options.fused == "auto" and fused_supported(tensors))
    return torch.optim.AdamW(groups, lr=lr, betas=options.betas, eps=options.eps, fused=fused)


def fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch has a fused AdamW kernel for every one of ``params``."""
    try:  # torch's own list (CPU joined CUDA in torch 2.4)
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        devices = _get_fused_kernels_supported_devices()
    except ImportError:
        devices = ["cuda"]
    return bool(params) and all(
        p.device.type in devices and torch.is_floating_point(p) for p in params
    )


@hookimpl
def register_optimizers(register):
    register("adamw", adamw, options=AdamWOptions)
