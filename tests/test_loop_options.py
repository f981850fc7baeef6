"""The loop's switches: precision, compile, activation checkpointing, lr scaling, metrics."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import tel_core.train.loop
import tel_core.train.loss
import tel_core.train.precision
from tel_core.config.schema import TrainConfig
from tel_core.errors import ConfigError
from tel_core.train.checkpoint import load_checkpoint
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.precision import Precision, resolve_precision
from tel_core.train.run import run

CPU = torch.device("cpu")


def train_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "train/loss" in r]


def losses(run_dir):
    return [r["train/loss"] for r in train_records(run_dir)]


def test_bf16_autocast_on_cpu_trains_close_to_fp32(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "fp32", registry)
    tiny["train"]["precision"] = "bf16"
    run(experiment_from_dict(tiny, registry), tmp_path / "bf16", registry)
    fp32, bf16 = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert bf16 != fp32  # autocast did change the arithmetic ...
    assert bf16 == pytest.approx(fp32, abs=0.01)  # ... and not the training
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"


def test_fp16_needs_cuda(tmp_path, registry, tiny):
    with pytest.raises(ConfigError, match=r'precision = "fp16" needs a CUDA device'):
        resolve_precision("fp16", CPU)
    tiny["train"].update(precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_explicit_precisions_are_taken_as_given_on_a_cpu():
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp32", CPU) == "fp32"


def test_activation_checkpointing_changes_no_number(tmp_path, registry, tiny):
    tiny["model"]["dropout"] = 0.1  # recomputation must replay the same dropout masks
    run(experiment_from_dict(tiny, registry), tmp_path / "plain", registry)
    tiny["train"]["activation_checkpointing"] = True
    run(experiment_from_dict(tiny, registry), tmp_path / "checkpointed", registry)
    assert losses(tmp_path / "checkpointed") == losses(tmp_path / "plain")


def test_compiled_training_matches_eager(tmp_path, registry, tiny, capsys):
    # About 40 s on two cores the first time (inductor builds C++), seconds once cached.
    tiny["train"].update(max_steps=3, eval_every=3)
    run(experiment_from_dict(tiny, registry), tmp_path / "eager", registry)
    tiny["train"]["compile"] = True
    run(experiment_from_dict(tiny, registry), tmp_path / "compiled", registry)
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), abs=1e-5)
    out = capsys.readouterr().out
    assert "compiling the model with torch.compile: the first step is slow" in out
    assert "the first step (compiling) took" in out


def test_lr_scaling():
    assert TrainConfig(batch_size=64, lr_scaling="linear", reference_batch_size=16).lr_scale == 4
    assert TrainConfig(batch_size=64, lr_scaling="sqrt", reference_batch_size=16).lr_scale == 2
    assert TrainConfig(batch_size=64, reference_batch_size=16).lr_scale == 1
    with pytest.raises(ValueError, match="needs reference_batch_size"):
        TrainConfig(lr_scaling="sqrt")


def test_scaled_learning_rates_reach_the_optimizer(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "plain", registry)
    tiny["train"].update(lr_scaling="linear", reference_batch_size=2)  # batch 4: x2
    run(experiment_from_dict(tiny, registry), tmp_path / "scaled", registry)
    plain, scaled = train_records(tmp_path / "plain"), train_records(tmp_path / "scaled")
    assert [r["train/lr"] for r in scaled] == pytest.approx([2 * r["train/lr"] for r in plain])
    assert losses(tmp_path / "scaled") != losses(tmp_path / "plain")


def test_lr_scaling_without_a_reference_is_a_config_error(registry, tiny):
    tiny["train"]["lr_scaling"] = "linear"
    with pytest.raises(ConfigError, match=r"\[train\].*needs reference_batch_size"):
        experiment_from_dict(tiny, registry)


def test_the_loop_reports_tokens_clipping_memory_and_time(tmp_path, registry, tiny):
    tiny["train"].update(grad_clip=0.5, micro_batch_size=2)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    records = train_records(tmp_path / "run")
    for r in records:
        assert r["train/tokens_per_step"] == 4 * 16
        assert r["train/clipped"] == int(r["train/grad_norm"] > 0.5)
        assert r["mem/peak_mb"] > 10 and r["time/step_s"] > 0
        assert math.isfinite(r["train/tokens_per_s"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["accumulation_steps"] == 2 and manifest["tokens_per_step"] == 64


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """Let fp16 run on the CPU, which has float16 autocast and torch's real GradScaler:
    the loop's whole scaler path, on the scaler torch ships (tel itself keeps fp16 for
    CUDA, where float16 is fast)."""
    real = tel_core.train.precision.resolve_precision
    monkeypatch.setattr(
        tel_core.train.precision,
        "resolve_precision",
        lambda setting, device, *rule: (
            "fp16" if setting == "fp16" else real(setting, device, *rule)
        ),
    )


def scale_the_loss_at(monkeypatch, step: int, factor: float) -> None:
    """Multiply the loss of one step (one micro-batch each here) by ``factor``."""
    calls = {"n": 0}
    real = tel_core.train.loss.step_loss

    def step_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * factor if calls["n"] == step else loss

    monkeypatch.setattr(tel_core.train.loss, "step_loss", step_loss)


def scaler_state(run_dir, name="latest.pt"):
    return load_checkpoint(run_dir / "checkpoints" / name)["scaler"]


def test_fp16_with_torchs_gradient_scaler_trains_like_fp32(tmp_path, registry, tiny, fp16_on_cpu):
    tiny["train"]["device"] = "cpu"
    run(experiment_from_dict(tiny, registry), tmp_path / "fp32", registry)
    tiny["train"]["precision"] = "fp16"
    run(experiment_from_dict(tiny, registry), tmp_path / "fp16", registry)
    fp32, fp16 = losses(tmp_path / "fp32"), losses(tmp_path / "fp16")
    assert fp16 != fp32 and fp16 == pytest.approx(fp32, abs=1e-3)
    assert json.loads((tmp_path / "fp16" / "manifest.json").read_text())["precision"] == "fp16"
    state = scaler_state(tmp_path / "fp16")
    assert state["scale"] == 2.0**16 and state["_growth_tracker"] == 6  # six good steps


@pytest.mark.parametrize(
    ("factor", "nonfinite"),
    [(1e37, "stop"), (float("nan"), "skip")],
    ids=["overflow", "nan-loss"],
)
def test_fp16_skips_a_bad_step_and_trains_on(
    tmp_path, registry, tiny, fp16_on_cpu, monkeypatch, factor, nonfinite
):
    """An overflow (the loss times the scale is inf) is routine: the scaler skips the
    update and halves its scale. A NaN loss under "skip" is skipped by tel, and the scaler
    must still see the step: unscale_() without update() makes the next step raise."""
    tiny["train"].update(
        precision="fp16", device="cpu", nonfinite=nonfinite, checkpoint_every=1, keep_last=0
    )
    scale_the_loss_at(monkeypatch, 3, factor)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    records = train_records(tmp_path / "run")
    assert [r["train/skipped"] for r in records] == [0, 0, 1, 0, 0, 0]
    assert all(math.isfinite(r["train/loss"]) for r in records[3:])
    two, three = (load_checkpoint(tmp_path / "run" / "checkpoints" / f) for f in (
        "step_0000002.pt", "step_0000003.pt"
    ))  # fmt: skip
    assert all(torch.equal(three["model"][k], v) for k, v in two["model"].items())
    assert three["scaler"]["scale"] == two["scaler"]["scale"] / 2  # backed off once
    assert scaler_state(tmp_path / "run")["scale"] == 2.0**15


def test_fp16_resumes_with_the_scalers_state(tmp_path, registry, tiny, fp16_on_cpu, monkeypatch):
    tiny["train"].update(precision="fp16", device="cpu", checkpoint_every=3)
    scale_the_loss_at(monkeypatch, 2, 1e37)  # the scale halves at step 2
    run(experiment_from_dict(tiny, registry), tmp_path / "whole", registry)
    whole = scaler_state(tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    checkpoints = tmp_path / "resumed" / "checkpoints"
    (checkpoints / "step_0000003.pt").replace(checkpoints / "latest.pt")
    run(experiment_from_dict(tiny, registry), tmp_path / "resumed", registry, resume=True)
    assert scaler_state(tmp_path / "resumed") == whole
    assert whole["scale"] == 2.0**15 and losses(tmp_path / "resumed") == losses(tmp_path / "whole")


def test_without_a_scaler_a_nonfinite_step_is_not_taken():
    precision = Precision("fp32", torch.device("cpu"))
    weight = torch.nn.Parameter(torch.zeros(1))
    weight.grad = torch.ones(1)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert precision.step(optimizer, finite=False) is False and weight.item() == 0.0
    assert precision.step(optimizer, finite=True) is True and weight.item() != 0.0


def test_gradients_are_clipped_only_on_the_steps_that_need_it(
    tmp_path, registry, tiny, monkeypatch
):
    # Below the threshold torch's clipping multiplies every gradient by 1: the loop skips it.
    calls = []
    clip = torch.nn.utils.clip_grads_with_norm_

    def counted(*args, **kwargs):
        calls.append(1)
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", counted)
    tiny["train"]["grad_clip"] = 0.0
    run(experiment_from_dict(tiny, registry), tmp_path / "off", registry)
    assert calls == []
    tiny["train"]["grad_clip"] = 1e9
    run(experiment_from_dict(tiny, registry), tmp_path / "never", registry)
    assert calls == [] and losses(tmp_path / "never") == losses(tmp_path / "off")
    norms = sorted(r["train/grad_norm"] for r in train_records(tmp_path / "off"))
    tiny["train"]["grad_clip"] = norms[len(norms) // 2]  # about half the steps clip
    run(experiment_from_dict(tiny, registry), tmp_path / "half", registry)
    clipped = sum(r["train/clipped"] for r in train_records(tmp_path / "half"))
    assert 0 < len(calls) == clipped < len(norms)
