"""Which device a process trains on, compiling for it, and how much memory it has used."""

from __future__ import annotations

import os
import resource
import shutil
import sys
from collections.abc import Callable

import torch
from torch import nn

from tel_core.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``[train] device``: "auto" is CUDA when there is a GPU, else the CPU.

    Under data parallel, each process on a machine takes the GPU of its local rank
    ("auto" and "cuda" alike).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"[train] device: unknown device {name!r}; try auto, cpu, cuda, cuda:0"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"[train] device = {name!r}, but torch sees no CUDA device here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"[train] device: {device} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far, in MiB: the most CUDA memory allocated by tensors on a GPU, the
    peak resident set size of the whole process on the CPU (Python and torch included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def compile_model(model: nn.Module, device: torch.device, info: Callable[[str], None]) -> nn.Module:
    """``torch.compile(model)``. On a CPU, inductor writes C++ and builds it with the
    system compiler, so one must be there; the first step takes long either way."""
    if device.type == "cpu" and not (
        os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    ):
        raise ConfigError(
            "[train] compile = true on a CPU needs a C++ compiler (g++ or clang++) on PATH; "
            "install one or set train.compile = false"
        )
    info(
        "compiling the model with torch.compile: the first step is slow (a minute or more "
        "on a CPU) while kernels are generated and built; later runs reuse a cache"
    )
    return torch.compile(model)
