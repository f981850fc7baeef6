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

import attrs
import torch

from tel_core.errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@attrs.frozen
class Hardware:
    """What the ``auto`` rule knows of a device; tests describe machines with it."""

    device: str  # "cpu", "cuda", "mps", ...
    cuda_capability: tuple[int, int] | None = None  # (major, minor) on CUDA
    avx512_bf16: bool = False  # x86 bf16 dot products (Cooper Lake, Sapphire Rapids, Zen 4)
    amx: bool = False  # Intel AMX matrix tiles (Sapphire Rapids and later)


def hardware(device: torch.device) -> Hardware:
    """This machine's ``device``, as the ``auto`` rule sees it."""
    if device.type == "cuda":
        return Hardware("cuda", cuda_capability=tuple(torch.cuda.get_device_capability(device)))
    if device.type == "cpu":
        flag = {name: getattr(torch.cpu, name, lambda: False)() for name in _CPU_FLAGS}
        return Hardware(
            "cpu", avx512_bf16=flag["_is_avx512_bf16_supported"], amx=flag["_is_amx_tile_supported"]
        )
    return Hardware(device.type)


_CPU_FLAGS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")

#: On a CPU with bf16 arithmetic, eager bf16 pays from this model width on: below it the
#: matrices are too small for bf16's faster multiplies to pay for autocast's casts.
CPU_BF16_MIN_WIDTH = 256


@attrs.frozen
class Choice:
    precision: str  # "fp32" or "bf16"
    reason: str  # one line, recorded in manifest.json


def auto_precision(hw: Hardware, d_model: int, compiled: bool = False) -> Choice:
    """What ``precision = "auto"`` becomes on ``hw`` for a model ``d_model`` wide.

    Measured (README, *Precision*): on CUDA bf16 runs on tensor cores from Ampere on. On
    a CPU without bf16 arithmetic, bf16 is emulated: its matrix multiplies ran 40x slower
    than fp32's on an AVX2 CPU. On a CPU with it, eager bf16 lost at width 128 (0.70x with
    AMX, 1.00x with AVX512-BF16) and won from 384 on (1.63x at 384, 2.54x at 512); compiled,
    the casts fuse into other kernels and bf16 won even at width 128 (1.28x).
    """
    if hw.device == "cuda":
        if hw.cuda_capability is not None and hw.cuda_capability >= (8, 0):
            return Choice("bf16", "CUDA compute capability >= 8.0: bf16 tensor cores")
        return Choice("fp32", "CUDA compute capability < 8.0: no bf16 tensor cores")
    if hw.device != "cpu":
        return Choice("fp32", f"bf16 autocast is not known to pay on {hw.device}")
    if not (hw.avx512_bf16 or hw.amx):
        return Choice("fp32", "this CPU has no bf16 arithmetic (AVX512-BF16 or AMX): emulated")
    if compiled:
        return Choice("bf16", "CPU with bf16 arithmetic, compiled model")
    if d_model < CPU_BF16_MIN_WIDTH:
        return Choice(
            "fp32", f"CPU with bf16 arithmetic, but d_model {d_model} < {CPU_BF16_MIN_WIDTH}"
        )
    return Choice("bf16", f"CPU with bf16 arithmetic and d_model {d_model} >= {CPU_BF16_MIN_WIDTH}")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 in hardware (rather than emulating it)."""
    hw = hardware(device)
    if hw.device == "cuda":
        return hw.cuda_capability is not None and hw.cuda_capability >= (8, 0)
    return hw.device == "cpu" and (hw.avx512_bf16 or hw.amx)


def resolve_precision(
    setting: str, device: torch.device, d_model: int = 0, compiled: bool = False
) -> str:
    """ "fp32", "bf16" or "fp16" for ``setting`` on ``device``; a ConfigError if impossible."""
    if setting == "auto":
        return auto_precision(hardware(device), d_model, compiled).precision
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

    def __init__(
        self,
        setting: str,
        device: torch.device,
        d_model: int = 0,
        compiled: bool = False,
        tf32: bool = True,
    ) -> None:
        self.name = resolve_precision(setting, device, d_model, compiled)
        #: Why: the auto rule's reason, or that the setting asked for it.
        self.reason = (
            auto_precision(hardware(device), d_model, compiled).reason
            if setting == "auto"
            else f'precision = "{setting}"'
        )
        self.device = device
        #: Whether float32 matmuls and convolutions may use TF32 (on CUDA; a CPU has none).
        self.tf32 = tf32
        if device.type == "cuda":  # process-wide: the fp32 matmuls of everything here
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            torch.backends.cudnn.allow_tf32 = tf32
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
