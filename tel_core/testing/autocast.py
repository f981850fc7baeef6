"""CUDA autocast's dtype rules, on a CPU: catch the bugs that only a GPU would show.

Autocast picks each op's precision from a list, and the lists differ by device. On CUDA
the ops that lose too much in 16 bits (``exp``, ``sum``, ``softmax``, ``layer_norm``,
``pow``, ``log``, ...) run in float32 and return float32; CPU autocast leaves them in the
low precision. Code that is right on a CPU can therefore break on a GPU: a hand-written
backward pass that saved float32 probabilities receives a bfloat16 gradient, or a running
sum kept "in float32" is cast back to float16 by the next matmul and overflows.

``cuda_autocast(dtype)`` runs CPU autocast at ``dtype`` (bfloat16 or float16) with a
``TorchFunctionMode`` on top that applies CUDA's float32 list: the floating-point
arguments of those ops are cast to float32, as CUDA autocast casts them. The matmul family
is already low precision under CPU autocast, as under CUDA's. Like autocast, it acts in the
forward pass only (a backward pass runs without it).

    with cuda_autocast(torch.float16):
        loss = model(x).float().mean()
    loss.backward()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: CUDA autocast's float32 list (torch's autocast_mode.cpp, "fp32" ops on CUDA), by the
#: Python name under which the op is called (torch.X, Tensor.X or torch.nn.functional.X).
CUDA_FP32_OPS = frozenset(
    {
        "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
        "reciprocal", "rsqrt", "sinh", "tan", "pow", "__pow__", "__rpow__", "__rdiv__",
        "__rtruediv__", "softplus", "layer_norm", "group_norm", "norm", "normalize",
        "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss",
        "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss",
        "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
        "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
        "dist", "pdist", "cdist", "renorm", "logsumexp", "softmax", "log_softmax", "softmin",
        "cross_entropy", "cumprod", "cumsum", "prod", "sum",
    }
)  # fmt: skip

LOW = (torch.bfloat16, torch.float16)


def _to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in LOW:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value


class CudaAutocastRules(TorchFunctionMode):
    """While CPU autocast is on, run CUDA autocast's float32 ops in float32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in CUDA_FP32_OPS and torch.is_autocast_enabled("cpu"):
            args, kwargs = _to_fp32(args), {k: _to_fp32(v) for k, v in kwargs.items()}
            if name in ("sum", "cumsum", "cumprod", "prod", "softmax", "log_softmax"):
                kwargs.pop("dtype", None)  # autocast decides: float32
        return func(*args, **kwargs)


@contextmanager
def cuda_autocast(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """CPU autocast at ``dtype`` under CUDA autocast's rules for which ops stay float32."""
    if dtype not in LOW:
        raise ValueError(f"cuda_autocast takes bfloat16 or float16, not {dtype}")
    with torch.autocast("cpu", dtype=dtype), CudaAutocastRules():
        yield
