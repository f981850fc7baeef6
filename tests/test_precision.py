"""precision = "auto": the rule against described machines (never the one running the
tests), how a device is described, and that a run follows the rule."""

from __future__ import annotations

import json

import pytest
import torch

import tel_core.train.precision
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.precision import CPU_BF16_MIN_WIDTH, Hardware, auto_precision, hardware
from tel_core.train.run import run

A100 = Hardware("cuda", cuda_capability=(8, 0))
H100 = Hardware("cuda", cuda_capability=(9, 0))
RTX3090 = Hardware("cuda", cuda_capability=(8, 6))
V100 = Hardware("cuda", cuda_capability=(7, 0))
T4 = Hardware("cuda", cuda_capability=(7, 5))
ZEN3 = Hardware("cpu")  # AVX2 only: bf16 is emulated
ZEN4 = Hardware("cpu", avx512_bf16=True)
SAPPHIRE_RAPIDS = Hardware("cpu", avx512_bf16=True, amx=True)
AMX_ONLY = Hardware("cpu", amx=True)
APPLE = Hardware("mps")


@pytest.mark.parametrize(
    ("hw", "d_model", "compiled", "expected"),
    [
        # CUDA: bf16 tensor cores from Ampere (8.0) on, whatever the model.
        (A100, 128, False, "bf16"),
        (H100, 768, True, "bf16"),
        (RTX3090, 64, False, "bf16"),
        (V100, 768, False, "fp32"),
        (T4, 768, True, "fp32"),
        # A CPU without bf16 arithmetic: emulated bf16 never pays.
        (ZEN3, 128, False, "fp32"),
        (ZEN3, 4096, False, "fp32"),
        (ZEN3, 768, True, "fp32"),
        # A CPU with it: eager bf16 pays on wide models only ...
        (SAPPHIRE_RAPIDS, 128, False, "fp32"),  # nanoGPT's baby model: bf16 was 0.70x
        (SAPPHIRE_RAPIDS, CPU_BF16_MIN_WIDTH - 1, False, "fp32"),
        (SAPPHIRE_RAPIDS, CPU_BF16_MIN_WIDTH, False, "bf16"),
        (SAPPHIRE_RAPIDS, 384, False, "bf16"),  # the 10.6M model: bf16 was 1.63x
        (ZEN4, 128, False, "fp32"),
        (ZEN4, 512, False, "bf16"),
        (AMX_ONLY, 768, False, "bf16"),
        # ... and compiled (casts fused into other kernels) on every model.
        (SAPPHIRE_RAPIDS, 128, True, "bf16"),
        (ZEN4, 64, True, "bf16"),
        # Elsewhere: fp32.
        (APPLE, 768, False, "fp32"),
    ],
)
def test_the_auto_rule_on_described_machines(hw, d_model, compiled, expected):
    choice = auto_precision(hw, d_model, compiled)
    assert choice.precision == expected
    assert choice.reason and "\n" not in choice.reason


def test_a_cpu_is_described_by_the_flags_torch_reports(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert hardware(torch.device("cpu")) == AMX_ONLY
    # A torch too old to report a flag: taken as absent.
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert hardware(torch.device("cpu")) == ZEN3


def test_a_gpu_is_described_by_its_compute_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert hardware(torch.device("cuda", 0)) == T4


@pytest.mark.parametrize(
    ("machine", "d_model", "expected", "reason"),
    [
        (SAPPHIRE_RAPIDS, 32, "fp32", "d_model 32 < 256"),
        (SAPPHIRE_RAPIDS, 256, "bf16", "d_model 256 >= 256"),
        (ZEN3, 256, "fp32", "no bf16 arithmetic"),
    ],
)
def test_a_run_with_auto_follows_the_rule_and_says_why(
    tmp_path, registry, tiny, monkeypatch, machine, d_model, expected, reason
):
    monkeypatch.setattr(tel_core.train.precision, "hardware", lambda device: machine)
    tiny["model"]["d_model"] = d_model
    tiny["train"].update(precision="auto", max_steps=1, eval_every=1, eval_batches=1)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["precision"] == expected
    assert reason in manifest["precision_reason"]
