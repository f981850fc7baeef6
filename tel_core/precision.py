"""Mixed precision: the dtype the forward pass computes in, and fp16's gradient scaler.

Weights, gradients, optimizer state and the loss stay float32 in every mode; autocast
only runs the operations that gain from it (matrix multiplies, attention) in the lower
precision. bfloat16 has float32's range, so it needs nothing more. float16 does not: small
gradients underflow to zero, so its loss is multiplied by a large factor before the
backward pass and the gradients divided by it before the update (``GradScaler``), which
also skips the update of a step whose gradients overflowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from tel_core.errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 in hardware (rather than emulating it)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no including_emulation argument
            return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        # x86 CPUs with AVX512-BF16 or AMX have bfloat16 dot products; elsewhere autocast
        # converts back and forth and is usually slower than float32.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(setting: str, device: torch.device) -> str:
    """ "fp32", "bf16" or "fp16" for ``setting`` on ``device``; a ConfigError if impossible."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError(
            f'[train] precision = "fp16" needs a CUDA device (float16 autocast with a '
            f'gradient scaler); on {device.type} use "bf16" or "fp32"'
        )
    if setting == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f'[train] precision = "bf16", but {torch.cuda.get_device_name(device)} has no '
            f'bfloat16; use "fp16" or "fp32"'
        )
    return setting


class Precision:
    """Autocast for the forward pass, and the scaled backward pass and step of fp16."""

    def __init__(self, setting: str, device: torch.device) -> None:
        self.name = resolve_precision(setting, device)
        self.device = device
        self.dtype = DTYPES[self.name]
        # On the device it runs on: a CUDA scaler without CUDA quietly disables itself.
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size (before clipping measures them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, finite: bool = True) -> bool:
        """Update the weights unless the step is not ``finite``; whether they were updated.

        With fp16 the scaler decides: it skips a step whose gradients overflowed and lowers
        its scale, and it must see every step (``update()`` resets what ``unscale_`` did).
        """
        if self.scaler is None:
            if finite:
                optimizer.step()
            return finite
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale shrinks only after an overflow

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
