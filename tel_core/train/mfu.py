"""Model FLOPs utilisation: the model's training FLOPs per second over the device's peak.

    train/mfu = tokens/s x FLOPs per token / (peak FLOP/s of one device x processes)

The peak depends on the arithmetic the run's matrix multiplies use: bf16 and fp16 on
tensor cores, TF32 for fp32 on CUDA when TF32 is on, plain fp32 otherwise. On the GPUs
in ``CUDA_PEAKS`` it comes from the vendor's datasheet (dense, without sparsity). Anywhere
else, the CPU included, it is measured: the best rate of a few square matrix multiplies
on the device, in the run's dtype and with torch's threads, taken once and cached in
``$TEL_CACHE_DIR/peak_flops.json`` (default ``~/.cache/tel``), keyed by the device,
dtype, thread count and torch version. A measurement taken while other programs use the
machine comes out low (and the MFU high): delete the file to measure again.
``manifest.json`` records the peak a run used and how it was found.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core.data.token_cache import cache_root

#: Dense peak TFLOP/s by the arithmetic of the matrix multiplies, for GPUs whose
#: ``torch.cuda.get_device_name`` contains the key (the first match wins, so the more
#: specific names come first). From NVIDIA's datasheets; their sparse figures halved.
CUDA_PEAKS: dict[str, dict[str, float]] = {
    "H200 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM (HBM3)
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
#: Square sizes tried when measuring, smallest first (a size that takes too long ends it).
#: A CPU's small sizes are there for emulated bf16, whose best rate is at 64 (3 GFLOP/s
#: against 0.5 at 512 on an AVX2 CPU): without them its MFU came out above 100%.
SIZES = {"cpu": (64, 128, 256, 512, 1024), "cuda": (2048, 4096, 8192)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32}
CACHE_FILE = "peak_flops.json"


@attrs.frozen
class Peak:
    """The peak FLOP/s of one device for the run's arithmetic, and where it came from."""

    flops: float  # per second
    dtype: str  # "bf16", "fp16", "tf32" or "fp32"
    source: str  # "datasheet: ..." or "measured: ..."

    def manifest(self) -> dict[str, Any]:
        return {"flops_per_s": self.flops, "dtype": self.dtype, "source": self.source}


def mfu(tokens_per_s: float, flops_per_token: float, peak: Peak, processes: int = 1) -> float:
    """The fraction of ``processes`` devices' peak that the training FLOPs reach."""
    return tokens_per_s * flops_per_token / (peak.flops * processes)


def matmul_dtype(precision: str, device: torch.device) -> str:
    """The arithmetic of the run's matrix multiplies: its precision, or tf32 for fp32 on
    CUDA with TF32 matmuls on."""
    if precision == "fp32" and device.type == "cuda" and _tf32_enabled():
        return "tf32"
    return precision


def _tf32_enabled() -> bool:
    return torch.get_float32_matmul_precision() != "highest"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def datasheet_peak(name: str, dtype: str) -> Peak | None:
    """The datasheet peak of a GPU called ``name``, or None if it is not in the table."""
    for key, peaks in CUDA_PEAKS.items():
        if key in name and dtype in peaks:
            return Peak(peaks[dtype] * 1e12, dtype, f"datasheet: {key} {dtype} dense")
    return None


def device_peak(precision: str, device: torch.device, cache: Path | None = None) -> Peak:
    """The peak for a run of ``precision`` on ``device``: the datasheet's, or measured
    once and cached (in ``cache``, default the tel cache directory)."""
    dtype = matmul_dtype(precision, device)
    name = device_name(device)
    if device.type == "cuda":
        known = datasheet_peak(name, dtype)
        if known is not None:
            return known
    threads = torch.get_num_threads() if device.type == "cpu" else None
    key = f"{name} | {dtype} | {threads or 'all'} threads | torch {torch.__version__}"
    path = (cache or cache_root()) / CACHE_FILE
    cached = _read(path)
    if key not in cached:
        flops, size = measure_matmul(device, dtype)
        cached = {**_read(path), key: {"flops_per_s": flops, "size": size}}
        _write(path, cached)
    entry = cached[key]
    return Peak(
        entry["flops_per_s"],
        dtype,
        f"measured: {dtype} {entry['size']}x{entry['size']} matmul on {name}"
        + (f", {threads} threads" if threads else "")
        + f"; cached in {path}",
    )


def measure_matmul(
    device: torch.device, dtype: str, seconds: float = 0.15, sizes: tuple[int, ...] | None = None
) -> tuple[float, int]:
    """The best FLOP/s of square ``dtype`` matrix multiplies on ``device``, and its size.

    Each size runs for about ``seconds`` and counts its fastest multiply (other programs
    on the machine slow some down; the fastest is the nearest to the device's own rate);
    a size whose single multiply takes longer than that is the last tried (an emulated
    dtype is slow). The run's random generator is left alone: the matrices come from a
    generator of their own.
    """
    torch_dtype = DTYPES.get(dtype, torch.float32)
    generator = torch.Generator(device=device).manual_seed(0)
    previous = torch.get_float32_matmul_precision()
    if device.type == "cuda":  # the peak of the arithmetic asked for, tf32 or not
        torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    best, best_size = 0.0, 0
    try:
        for n in sizes or SIZES.get(device.type, SIZES["cpu"]):
            a = torch.rand(n, n, generator=generator, device=device).to(torch_dtype)
            b = torch.rand(n, n, generator=generator, device=device).to(torch_dtype)
            a @ b  # warm-up: allocation, kernel selection
            _sync(device)
            fastest, started = math.inf, time.perf_counter()
            while time.perf_counter() - started < seconds:
                tick = time.perf_counter()
                a @ b
                _sync(device)
                fastest = min(fastest, time.perf_counter() - tick)
            rate = 2 * n**3 / fastest
            if rate > best:
                best, best_size = rate, n
            if fastest >= seconds:
                break
    finally:
        torch.set_float32_matmul_precision(previous)
    return best, best_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (another process may be reading); a read-only cache is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
