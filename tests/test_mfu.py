"""train/mfu: the datasheet peaks, the measured and cached CPU peak, and the loop's metric."""

from __future__ import annotations

import json
import math

import pytest
import torch

import tel_core.train.mfu
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.mfu import (
    CACHE_FILE,
    Peak,
    datasheet_peak,
    device_peak,
    matmul_dtype,
    measure_matmul,
    mfu,
)
from tel_core.train.run import run
from tel_core.use.load_run import load_run

from .flops import counted_flops_per_token

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "dtype", "tflops"),
    [
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100 80GB PCIe", "tf32", 156.0),
        ("NVIDIA A100-SXM4-40GB", "fp32", 19.5),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),  # not the SXM part's figure
        ("NVIDIA H100 NVL", "tf32", 417.5),
        ("NVIDIA H200", "tf32", 494.7),
        ("NVIDIA H200", "fp32", 66.9),
        ("NVIDIA H200 NVL", "bf16", 835.5),
    ],
)
def test_datasheet_peaks(name, dtype, tflops):
    peak = datasheet_peak(name, dtype)
    assert peak.flops == pytest.approx(tflops * 1e12)
    assert peak.dtype == dtype and peak.source.startswith("datasheet:")


def test_a_gpu_not_in_the_table_has_no_datasheet_peak():
    assert datasheet_peak("Tesla T4", "fp16") is None


def test_the_peak_is_for_the_arithmetic_of_the_matmuls():
    cuda = torch.device("cuda", 0)  # a description only: nothing runs on it
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert matmul_dtype("fp32", cuda) == "tf32"
        assert matmul_dtype("fp32", CPU) == "fp32"  # no TF32 on a CPU
        torch.set_float32_matmul_precision("highest")
        assert matmul_dtype("fp32", cuda) == "fp32"
        assert matmul_dtype("bf16", cuda) == "bf16"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_mfu_is_model_flops_over_the_peak_of_every_process():
    peak = Peak(1.2e10, "fp32", "test")
    assert mfu(1000.0, 6e6, peak) == pytest.approx(0.5)
    assert mfu(1000.0, 6e6, peak, processes=2) == pytest.approx(0.25)


def test_a_matmul_measurement_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    flops, size = measure_matmul(CPU, "fp32", seconds=0.01, sizes=(32, 64))
    assert flops > 0 and size in (32, 64)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_cpu_peak_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake(device, dtype):
        calls.append(dtype)
        return 1.5e11, 1024

    monkeypatch.setattr(tel_core.train.mfu, "measure_matmul", fake)
    first = device_peak("fp32", CPU, cache=tmp_path)
    again = device_peak("fp32", CPU, cache=tmp_path)
    assert calls == ["fp32"] and first == again
    assert first.flops == 1.5e11 and first.dtype == "fp32"
    assert first.source.startswith("measured: fp32 1024x1024 matmul") and CACHE_FILE in first.source
    device_peak("bf16", CPU, cache=tmp_path)  # another dtype: measured on its own
    assert calls == ["fp32", "bf16"]
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2


def test_a_damaged_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(tel_core.train.mfu, "measure_matmul", lambda device, dtype: (2e11, 512))
    (tmp_path / CACHE_FILE).write_text("{not json")
    assert device_peak("fp32", CPU, cache=tmp_path).flops == 2e11
    assert json.loads((tmp_path / CACHE_FILE).read_text())  # rewritten, valid


def test_every_log_line_has_mfu_and_the_manifest_its_peak(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    peak = manifest["peak_flops"]
    assert peak["dtype"] == "fp32" and peak["source"].startswith("measured: fp32")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    train = [r for r in map(json.loads, lines) if "train/loss" in r]
    assert len(train) == tiny["train"]["max_steps"]
    # The model's FLOPs as torch counts them in a training pass, not as tel estimates them.
    model = load_run(tmp_path / "run", registry=registry, device="cpu").model
    counted = counted_flops_per_token(model, model.vocab_size, model.block_size)
    assert manifest["flops_per_token"] == counted
    for r in train:
        done_per_s = r["train/tokens_per_s"] * counted
        assert r["train/mfu"] == pytest.approx(done_per_s / peak["flops_per_s"], rel=1e-9)
        assert r["train/tflops"] == pytest.approx(done_per_s / 1e12, rel=1e-9)
        assert math.isfinite(r["train/mfu"]) and r["train/mfu"] > 0
