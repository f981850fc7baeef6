"""The training loop: determinism, accumulation, the run directory, checkpoints."""

from __future__ import annotations

import json
import typing

import attrs
import pytest
import torch

from tel_core import hookimpl
from tel_core.errors import ConfigError, TelError
from tel_core.registry.interfaces import Logger
from tel_core.train.checkpoint import load_checkpoint
from tel_core.train.experiment import experiment_from_dict, load_experiment
from tel_core.train.loop import Trainer
from tel_core.train.run import run


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


def test_loss_falls(tmp_path, registry, tiny):
    tiny["train"].update(max_steps=40, eval_every=40)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    curve = losses(tmp_path / "run")
    assert sum(curve[-5:]) / 5 < curve[0] - 1.0


def test_overwrite_replaces_the_old_run_only_once_the_new_one_is_built(tmp_path, registry, tiny):
    tiny["train"].update(checkpoint_every=2, keep_last=5)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    checkpoints = tmp_path / "run" / "checkpoints"
    before = (checkpoints / "latest.pt").read_bytes()

    broken = {**tiny, "data": {**tiny["data"], "dataset": {"name": "text", "paths": ["gone"]}}}
    with pytest.raises(TelError, match="no file matches"):
        run(experiment_from_dict(broken, registry), tmp_path / "run", registry, overwrite=True)
    assert (checkpoints / "latest.pt").read_bytes() == before  # a failed start costs nothing
    assert (tmp_path / "run" / "metrics.jsonl").exists()

    tiny["train"].update(max_steps=3, checkpoint_every=3)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, overwrite=True)
    # Nothing of the old run is left: no stale snapshot, no stale metric line.
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "best.pt", "latest.pt", "step_0000003.pt",
    ]  # fmt: skip
    assert len(losses(tmp_path / "run")) == 3


def test_a_checkpoint_alone_marks_a_run(tmp_path, registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    run(exp, tmp_path / "run", registry)
    (tmp_path / "run" / "metrics.jsonl").unlink()  # say, deleted by hand
    with pytest.raises(TelError, match="already holds a run"):
        run(exp, tmp_path / "run", registry)


def test_a_prompt_the_tokenizer_refuses_fails_before_training(tmp_path, registry, tiny):
    tiny["data"]["tokenizer"] = {"name": "char", "unknown": "error"}
    tiny["sample"]["prompt"] = "☃"  # never in the training text
    with pytest.raises(TelError, match="never occurs in the training split"):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


class _Closing(Logger):
    closed: typing.ClassVar[list[str]] = []

    def __init__(self, options, ctx) -> None:
        pass

    def log(self, step, metrics) -> None:
        pass

    def close(self) -> None:
        _Closing.closed.append("closed")


class _LoggerPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("closing", _Closing)
        register("failing", _fail)


def _fail(options, ctx):
    raise TelError("this logger cannot start")


def test_a_logger_that_fails_to_start_closes_those_built_before(tmp_path, registry, tiny):
    registry.add_plugin(_LoggerPlugin(), name="loggers")
    tiny["loggers"] = [{"name": "closing"}, {"name": "failing"}]
    _Closing.closed.clear()
    with pytest.raises(TelError, match="cannot start"):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert _Closing.closed == ["closed"]


@attrs.frozen
class _TenfoldOptions:
    lr: float = 1e-3


def _tenfold_embeddings(options, params, lr):
    """AdamW whose embeddings learn ten times faster than everything else."""
    return torch.optim.AdamW(
        [
            {"params": params.matrices + params.vectors},
            {"params": params.embeddings, "lr": 10 * lr},
        ],
        lr=lr,
    )


class _OptimizerPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("tenfold", _tenfold_embeddings, options=_TenfoldOptions)


def test_the_schedule_keeps_an_optimizers_per_group_learning_rate_ratios(tmp_path, registry, tiny):
    registry.add_plugin(_OptimizerPlugin(), name="tenfold")
    tiny["optimizer"] = {"name": "tenfold", "lr": 1e-3}
    trainer = Trainer(experiment_from_dict(tiny, registry), tmp_path, registry)
    try:
        for step in (1, 2, 3):
            trainer.train_step(step)
            rest, embeddings = (g["lr"] for g in trainer.optimizer.param_groups)
            assert rest == pytest.approx(trainer.lr_at(step - 1))
            assert embeddings == pytest.approx(10 * rest)
    finally:
        trainer.close()


def test_a_prompt_the_tokenizer_refuses_is_named_as_the_prompt(tmp_path, registry, tiny):
    tiny["data"]["tokenizer"] = {"name": "char", "unknown": "error"}
    tiny["sample"]["prompt"] = "Zebra"  # no capital Z in the corpus
    with pytest.raises(ConfigError) as error:
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert str(error.value).startswith("[sample] prompt = 'Zebra': char tokenizer: 'Z' (U+005A)")
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training
