"""The CUDA path: pinned batches, fused AdamW, TF32, bf16 and fp16 with the real gradient
scaler, exact resume with the CUDA random state, memory metrics, NCCL.

Every test here is marked ``cuda`` and skips where torch sees no GPU (the project's CI has
none); ``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import tomli_w
import torch

from tel_core.train.checkpoint import load_checkpoint
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.loop import Trainer
from tel_core.train.run import run
from tel_core.train.stopping import Stopped

from .conftest import ROOT
from .test_resume import SignalPlugin

pytestmark = pytest.mark.cuda


def records(run_dir, key="train/loss"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if key in r]


def losses(run_dir):
    return [r["train/loss"] for r in records(run_dir)]


@pytest.fixture
def gpu(tiny):
    tiny["train"]["device"] = "cuda"
    return tiny


def test_batches_are_pinned_and_the_optimizer_fused(tmp_path, registry, gpu):
    trainer = Trainer(experiment_from_dict(gpu, registry), tmp_path, registry)
    batch = trainer.sampler.sample(4).pin_memory()
    assert batch.inputs.is_pinned() and batch.targets.is_pinned()
    assert trainer.optimizer.defaults["fused"] is True
    assert trainer.train_step(1).updated
    trainer.close()


def test_fp32_matmuls_use_tf32_unless_switched_off(tmp_path, registry, gpu):
    previous = torch.get_float32_matmul_precision()
    try:
        run(experiment_from_dict(gpu, registry), tmp_path / "tf32", registry)
        assert torch.get_float32_matmul_precision() == "high"
        peak = json.loads((tmp_path / "tf32" / "manifest.json").read_text())["peak_flops"]
        assert peak["dtype"] == "tf32"
        gpu["train"]["tf32"] = False
        run(experiment_from_dict(gpu, registry), tmp_path / "fp32", registry)
        assert torch.get_float32_matmul_precision() == "highest"
        peak = json.loads((tmp_path / "fp32" / "manifest.json").read_text())["peak_flops"]
        assert peak["dtype"] == "fp32"
    finally:
        torch.set_float32_matmul_precision(previous)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precisions_train_close_to_fp32(tmp_path, registry, gpu, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    gpu["train"]["tf32"] = False
    run(experiment_from_dict(gpu, registry), tmp_path / "fp32", registry)
    gpu["train"]["precision"] = precision
    run(experiment_from_dict(gpu, registry), tmp_path / precision, registry)
    half, full = losses(tmp_path / precision), losses(tmp_path / "fp32")
    assert all(map(math.isfinite, half)) and half != full
    skipped = [r["train/skipped"] for r in records(tmp_path / precision)]
    if not any(skipped):  # fp16's scaler may skip an overflowing step: then they part ways
        assert half == pytest.approx(full, abs=0.02)
    assert half[-1] < half[0]
    manifest = json.loads((tmp_path / precision / "manifest.json").read_text())
    assert manifest["precision"] == precision
    state = load_checkpoint(tmp_path / precision / "checkpoints" / "latest.pt")
    if precision == "fp16":  # the real GradScaler's state travels with the checkpoint
        assert state["scaler"]["scale"] > 0
    else:
        assert skipped == [0] * len(skipped)


@pytest.fixture
def deterministic(monkeypatch):
    """CUDA kernels that add with atomics (attention's backward) differ run to run in the
    last bits; deterministic algorithms make two runs comparable bit for bit."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def test_a_resumed_run_continues_exactly_with_the_cuda_random_state(
    tmp_path, registry, gpu, deterministic
):
    gpu["model"]["dropout"] = 0.1  # CUDA dropout masks: the CUDA generator must be restored
    gpu["train"].update(max_steps=12, eval_every=6)
    run(experiment_from_dict(gpu, registry), tmp_path / "whole", registry)
    registry.add_plugin(SignalPlugin(), name="signal")
    gpu["loggers"] = [{"name": "signal", "step": 5}]
    with pytest.raises(Stopped):
        run(experiment_from_dict(gpu, registry), tmp_path / "resumed", registry)
    gpu["loggers"] = []
    run(experiment_from_dict(gpu, registry), tmp_path / "resumed", registry, resume=True)
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "resumed")
    assert len(resumed) == 12 and resumed[5:] == whole[5:]


def test_memory_and_mfu_are_reported_on_the_gpu(tmp_path, registry, gpu):
    torch.cuda.reset_peak_memory_stats()
    run(experiment_from_dict(gpu, registry), tmp_path / "run", registry)
    for r in records(tmp_path / "run"):
        assert 0 < r["mem/peak_mb"] <= torch.cuda.max_memory_allocated() / 2**20 + 1e-6
        assert 0 < r["train/mfu"] < 1 and math.isfinite(r["train/mfu"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["device"].startswith("cuda") and manifest["device_name"]


def test_one_process_under_torchrun_uses_nccl(tmp_path, gpu):
    if not torch.distributed.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    path = tmp_path / "nccl.toml"
    path.write_text(tomli_w.dumps(gpu))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    done = subprocess.run(
        [*launcher, "-m", "tel_core", "run", str(path), "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["backend"] == "nccl" and manifest["processes"] == 1
    assert len(losses(tmp_path / "run")) == gpu["train"]["max_steps"]
