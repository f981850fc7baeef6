"""Checkpoints, exact resume, and stopping well (signals, non-finite losses)."""

from __future__ import annotations

import json
import math
import os
import signal

import attrs
import pytest
import torch

import tel_core.train.loss
from tel_core import hookimpl
from tel_core.analysis.runs import load_run
from tel_core.errors import ConfigError, TelError
from tel_core.registry.interfaces import Logger
from tel_core.train.checkpoint import load_checkpoint, step_file
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_core.train.stopping import Stopped


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in records(run_dir) if "train/loss" in r}


@attrs.frozen
class SignalOptions:
    step: int = 1
    signal: str = "SIGINT"
    times: int = 1  # 2: a second Ctrl-C while the first is being honoured


class SignalLogger(Logger):
    """Sends this process a signal when it sees a step: a Ctrl-C at an exact moment."""

    def __init__(self, options: SignalOptions, ctx) -> None:
        self.options = options

    def log(self, step, metrics):
        if step == self.options.step and "train/loss" in metrics:
            for _ in range(self.options.times):
                os.kill(os.getpid(), getattr(signal, self.options.signal))


class SignalPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("signal", SignalLogger, options=SignalOptions)


@pytest.fixture
def long_run(tiny):
    """The tiny experiment over 40 steps, with dropout (so the random state matters)."""
    tiny["model"]["dropout"] = 0.1
    tiny["train"].update(max_steps=40, eval_every=15, checkpoint_every=10, keep_last=2)
    return tiny


def test_a_run_stopped_at_step_17_resumes_exactly(tmp_path, registry, long_run, capsys):
    run(experiment_from_dict(long_run, registry), tmp_path / "whole", registry)

    # Step 17 neither evaluates (every 15) nor checkpoints (every 10): only the stop saves it.
    registry.add_plugin(SignalPlugin(), name="signal")
    long_run["loggers"] = [{"name": "signal", "step": 17}]
    with pytest.raises(Stopped) as stopped:
        run(experiment_from_dict(long_run, registry), tmp_path / "resumed", registry)
    assert stopped.value.exit_code == 130
    assert "stopped by SIGINT after step 17" in str(stopped.value)
    assert max(losses(tmp_path / "resumed")) == 17
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")["step"] == 17

    long_run["loggers"] = []
    result = run(
        experiment_from_dict(long_run, registry), tmp_path / "resumed", registry, resume=True
    )
    assert "resuming after step 17" in capsys.readouterr().out
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "resumed")
    assert list(resumed) == list(range(1, 41))  # every step once
    assert [resumed[s] for s in range(18, 41)] == [whole[s] for s in range(18, 41)]
    assert result.best_val_loss == run_best(tmp_path / "whole")
    checkpoints = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert checkpoints == ["best.pt", "latest.pt", "step_0000030.pt", "step_0000040.pt"]


def run_best(run_dir):
    return min(r["val/loss"] for r in records(run_dir) if "val/loss" in r)


def test_a_resume_drops_metrics_logged_after_the_checkpoint(tmp_path, registry, tiny):
    tiny["train"]["checkpoint_every"] = 3
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    checkpoints = tmp_path / "run" / "checkpoints"
    # As if killed after step 6 with its last checkpoint from step 3: steps 4-6 are redone.
    (checkpoints / "step_0000003.pt").replace(checkpoints / "latest.pt")
    assert load_checkpoint(checkpoints / "latest.pt")["step"] == 3
    before = losses(tmp_path / "run")
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    after = records(tmp_path / "run")
    assert [r["step"] for r in after if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert losses(tmp_path / "run") == before


def test_resuming_with_another_model_or_data_is_refused(tmp_path, registry, tiny):
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    tiny["train"]["max_steps"] = 8  # the train section may change
    tiny["model"]["d_model"] = 64
    tiny["data"]["block_size"] = 8
    with pytest.raises(ConfigError) as error:
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    message = str(error.value)
    assert "\n" not in message
    assert "model.d_model (32 -> 64)" in message and "data.block_size (16 -> 8)" in message
    assert "max_steps" not in message


def test_resume_needs_a_checkpoint_and_steps_left(tmp_path, registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    with pytest.raises(TelError, match="nothing to resume"):
        run(exp, tmp_path / "run", registry, resume=True)
    run(exp, tmp_path / "run", registry)
    with pytest.raises(TelError, match="already trained 6 of max_steps = 6"):
        run(exp, tmp_path / "run", registry, resume=True)


def poison_the_loss_at(monkeypatch, steps: set[int]) -> None:
    """The loss of the given steps becomes NaN (each step is one micro-batch here)."""
    calls = {"n": 0}
    real = tel_core.train.loss.step_loss

    def step_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] in steps else loss

    monkeypatch.setattr(tel_core.train.loss, "step_loss", step_loss)


def test_a_nonfinite_loss_stops_the_run_and_keeps_the_good_checkpoint(
    tmp_path, registry, tiny, monkeypatch
):
    tiny["train"].update(max_steps=8, eval_every=2)
    poison_the_loss_at(monkeypatch, {5})
    with pytest.raises(TelError) as error:
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert "the loss became nan" in str(error.value) and "at step 5" in str(error.value)
    assert "last good checkpoint (step 4) is kept" in str(error.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 4
    # The run directory says how it ended, for tel compare and tel sweep.
    assert records(tmp_path / "run")[-1] == {"step": 5, "train/loss": None, "train/diverged": 1}
    assert load_run(tmp_path / "run").status == "diverged"


def test_a_nonfinite_loss_can_skip_the_update(tmp_path, registry, tiny, monkeypatch):
    run(experiment_from_dict(tiny, registry), tmp_path / "clean", registry)
    tiny["train"].update(nonfinite="skip", checkpoint_every=1)
    poison_the_loss_at(monkeypatch, {3})  # in the middle: the steps after it must go on
    run(experiment_from_dict(tiny, registry), tmp_path / "skip", registry)
    skipped = [r for r in records(tmp_path / "skip") if "train/loss" in r]
    assert [r["train/skipped"] for r in skipped] == [0, 0, 1, 0, 0, 0]
    assert skipped[2]["train/loss"] is None  # NaN is written as null
    # Steps 1-2 trained as in the clean run; the weights and the optimizer's state after
    # step 3 are those after step 2; the steps after it train on, finite.
    assert [r["train/loss"] for r in skipped[:2]] == list(losses(tmp_path / "clean").values())[:2]
    two, three = (load_checkpoint(tmp_path / "skip" / "checkpoints" / step_file(s)) for s in (2, 3))
    for name, weight in two["model"].items():
        assert torch.equal(three["model"][name], weight), name
    assert three["optimizer"]["state"][0]["step"] == two["optimizer"]["state"][0]["step"]
    assert all(math.isfinite(r["train/loss"]) for r in skipped[3:])
    assert skipped[3]["train/loss"] != losses(tmp_path / "clean")[4]  # it trained from step 2


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, registry, tiny):
    registry.add_plugin(SignalPlugin(), name="signal")
    tiny["loggers"] = [{"name": "signal", "step": 2, "signal": "SIGINT", "times": 2}]
    with pytest.raises(KeyboardInterrupt):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert max(losses(tmp_path / "run")) == 2  # it stopped inside step 2's logging
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_step_checkpoints_keep_the_newest(tmp_path, registry, tiny):
    tiny["train"].update(checkpoint_every=2, keep_last=2, eval_every=100)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "best.pt",
        "latest.pt",
        "step_0000004.pt",
        "step_0000006.pt",
    ]
    state = load_checkpoint(checkpoints / "step_0000004.pt")
    assert state["step"] == 4
    assert set(state) >= {"model", "optimizer", "scaler", "rng", "data", "best_val_loss"}
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert not list(checkpoints.glob(".*.tmp"))  # written atomically, nothing left over


def test_resuming_with_other_optimizer_options_is_refused_but_lr_may_change(
    tmp_path, registry, tiny
):
    tiny["train"]["checkpoint_every"] = 3
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    tiny["train"]["max_steps"] = 8
    tiny["optimizer"]["weight_decay"] = 0.2  # the checkpoint's optimizer state holds 0.1
    with pytest.raises(ConfigError, match=r"optimizer\.weight_decay \(0\.1 -> 0\.2\)"):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    tiny["optimizer"] = {"name": "adamw", "lr": 1e-3}  # the same optimizer, a new peak lr
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    assert sorted(losses(tmp_path / "run")) == list(range(1, 9))


def test_a_signal_during_the_last_step_lets_the_run_finish(tmp_path, registry, tiny):
    registry.add_plugin(SignalPlugin(), name="signal")
    tiny["loggers"] = [{"name": "signal", "step": 6, "signal": "SIGTERM"}]
    result = run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    assert result.steps == 6 and result.sample  # finished: evaluated, sampled, no Stopped
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 6
