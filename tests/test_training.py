"""The training loop: determinism, accumulation, the run directory, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tel_core.checkpoint import load_checkpoint
from tel_core.config_loader import experiment_from_dict, load_experiment
from tel_core.errors import TelError
from tel_core.train import run


def losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["train/loss"] for line in lines if "train/loss" in line]


def test_two_runs_with_one_seed_give_identical_losses(tmp_path, registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    run(exp, tmp_path / "a", registry)
    run(exp, tmp_path / "b", registry)
    assert len(losses(tmp_path / "a")) == 6
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_another_seed_gives_other_losses(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "a", registry)
    tiny["seed"] = 8
    run(experiment_from_dict(tiny, registry), tmp_path / "b", registry)
    assert losses(tmp_path / "a") != losses(tmp_path / "b")


def test_micro_batches_train_like_one_batch(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "whole", registry)
    tiny["train"]["micro_batch_size"] = 1
    run(experiment_from_dict(tiny, registry), tmp_path / "split", registry)
    assert losses(tmp_path / "split") == pytest.approx(losses(tmp_path / "whole"), abs=1e-5)


def test_run_directory_holds_everything(tmp_path, registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    result = run(exp, tmp_path / "run", registry)
    run_dir = tmp_path / "run"
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.toml",
        "manifest.json",
        "metrics.jsonl",
        "checkpoints",
        "samples.txt",
        "tokenizer.json",
    }
    assert load_experiment(run_dir / "config.toml", registry=registry) == exp

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["parameters"] > 0
    plugins = {p["key"]: p for p in manifest["plugins"]}
    assert plugins["model.positional"]["name"] == "learned"
    assert plugins["model.positional"]["distribution"] == "tel"
    assert manifest["packages"]["torch"] == torch.__version__

    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    evals = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [3, 6]
    for key in (
        "train/lr",
        "train/grad_norm",
        "train/tokens",
        "train/tokens_per_s",
        "time/elapsed_s",
    ):
        assert key in train[0]
    assert train[-1]["train/tokens"] == 6 * 4 * 16
    assert evals[-1]["val/ppl"] == pytest.approx(2.718281828 ** evals[-1]["val/loss"])
    assert result.final_val_loss == evals[-1]["val/loss"]
    assert result.best_val_loss == min(r["val/loss"] for r in evals)

    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert latest["step"] == 6 and best["best_val_loss"] == result.best_val_loss
    assert result.sample and result.sample in (run_dir / "samples.txt").read_text()


def test_an_existing_run_is_not_overwritten(tmp_path, registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    run(exp, tmp_path / "run", registry)
    checkpoint = (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes()
    with pytest.raises(TelError, match="already holds a run; pass --resume"):
        run(exp, tmp_path / "run", registry)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes() == checkpoint


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TelError, match=r"bad\.pt: not a readable tel checkpoint"):
        load_checkpoint(path)


def test_loss_falls(tmp_path, registry, tiny):
    tiny["train"].update(max_steps=40, eval_every=40)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    curve = losses(tmp_path / "run")
    assert sum(curve[-5:]) / 5 < curve[0] - 1.0
