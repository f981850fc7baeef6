"""Shared pieces of the model-side checks: a small model shape, and tensor comparisons."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tel_core.registry.interfaces import ModelContext
from tel_core.testing.subject import fail

BATCH = 2
#: How far two float32 results of the same computation may drift apart (kernels on
#: different shapes add in different orders).
ATOL = 1e-5
#: bfloat16 keeps 8 bits of mantissa: allow this share of the output's scale.
BF16_RTOL = 0.05


def model_context(**changes: Any) -> ModelContext:
    """The model shape the kit builds attention, positional and ffn components for.

    Small enough to check in milliseconds; pass changes for a component that needs
    another shape, e.g. ``check_attention("x", ctx=model_context(n_heads=2))``. Attention
    and feed-forward modules are built for the first block (``layer=0``), as the core
    builds them for each block; ``model_context(layer=1)`` checks the last one.
    """
    values: dict[str, Any] = {
        "d_model": 32,
        "n_heads": 4,
        "n_layers": 2,
        "block_size": 16,
        "dropout": 0.0,
        "bias": True,
        "make_norm": lambda dim: nn.LayerNorm(dim),
        "layer": 0,
    }
    values.update(changes)
    return ModelContext(**values)


def randn(*shape: int, device: torch.device | str = "cpu", seed: int = 0) -> torch.Tensor:
    """Test inputs from their own generator: independent of (and not disturbing) torch's."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


def perturb(x: torch.Tensor) -> torch.Tensor:
    """Other values, certain to differ from ``x`` (unlike a fresh random draw)."""
    return 1.0 - 2.0 * x


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def expect_tensor(
    value: Any, shape: tuple[int, ...], dtype: torch.dtype, what: str = "the output"
) -> torch.Tensor:
    """``value`` is a finite tensor of ``shape`` and ``dtype``, or the check fails."""
    if not isinstance(value, torch.Tensor):
        fail(f"{what} is a {type(value).__name__}, not a torch.Tensor")
    if tuple(value.shape) != shape:
        fail(f"{what} has shape {tuple(value.shape)}; expected {shape}")
    if value.dtype != dtype:
        fail(f"{what} is {value.dtype} for {dtype} input; keep the input's dtype")
    if not torch.isfinite(value).all():
        fail(f"{what} is not finite (it holds NaN or inf)")
    return value


def expect_close(
    got: torch.Tensor, reference: torch.Tensor, problem: str, atol: float = ATOL
) -> None:
    if not reference.numel():
        return
    diff = max_diff(got, reference)
    if diff > atol * max(1.0, reference.abs().max().item()):
        fail(f"{problem} (by up to {diff:.2g})")


def expect_gradients(module: nn.Module, inputs: torch.Tensor | None = None) -> None:
    """After a backward pass: every trainable parameter (and the input) has a finite gradient.

    A gradient of exactly zero is allowed: the bias of a key projection, for one, gets
    none, since adding a constant to every score of a row leaves its softmax unchanged.
    """
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        fail(
            f"no gradient reaches {', '.join(missing)}: the parameter is unused, detached, "
            f"or used outside forward"
        )
    bad = [
        n
        for n, p in module.named_parameters()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    if bad:
        fail(f"the gradient of {', '.join(bad)} is not finite")
    if inputs is not None and (inputs.grad is None or not torch.isfinite(inputs.grad).all()):
        fail("no finite gradient reaches the input: the module cuts the backward pass")


def backward(output: torch.Tensor) -> None:
    """Back-propagate a random projection of ``output`` (every element matters)."""
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    (output * weights.to(output.device, output.dtype)).sum().backward()


def same_state(first: nn.Module, second: nn.Module, problem: str) -> None:
    """Two modules built alike hold identical parameters and buffers."""
    a = dict(first.named_parameters()) | dict(first.named_buffers())
    b = dict(second.named_parameters()) | dict(second.named_buffers())
    for name, tensor in a.items():
        if name not in b or not torch.equal(tensor, b[name]):
            fail(f"{problem}: {name} differs")


def bf16_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(torch.bfloat16)


def seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return build()
