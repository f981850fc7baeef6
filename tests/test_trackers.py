"""Swapping trackers is a one-word change: json, wandb and tensorboard record the same run."""

from __future__ import annotations

import pytest

from .trackers import jsonl, metric, tensorboard_scalars, wandb_history, wandb_runs

LOGGERS = {
    "json": {"name": "json", "path": "log.jsonl"},
    "wandb": {"name": "wandb", "mode": "offline"},
    "tensorboard": {"name": "tensorboard"},
}


def recorded_losses(logger: str, run_dir) -> dict[int, float]:
    """train/loss by step, as the tracker itself stored it."""
    if logger == "json":
        return metric(jsonl(run_dir / "log.jsonl"), "train/loss")
    if logger == "wandb":
        (offline,) = wandb_runs(run_dir)
        return metric([{"step": r["_step"], **r} for r in wandb_history(offline)], "train/loss")
    return tensorboard_scalars(run_dir / "tensorboard", "train/loss")


def test_json_wandb_and_tensorboard_record_the_same_losses(tel_train):
    runs = {name: tel_train(steps=5, loggers=[table]) for name, table in LOGGERS.items()}
    reference = metric(runs["json"].records, "train/loss")
    assert sorted(reference) == [1, 2, 3, 4, 5]
    for name, run in runs.items():
        assert metric(run.records, "train/loss") == reference, f"{name}: another run"
        recorded = recorded_losses(name, run.run_dir)
        assert recorded.keys() == reference.keys(), name
        # TensorBoard stores scalars as float32; json and W&B keep every digit.
        rel = 1e-7 if name == "tensorboard" else 0
        for step, loss in reference.items():
            assert recorded[step] == pytest.approx(loss, rel=rel, abs=0), (name, step)
