"""load_run: a trained model rebuilt from its run directory alone; tel run --resume PATH."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import tel_core
import tel_core.use.load_run as load_run_module
from tel_core.errors import TelError
from tel_core.train.checkpoint import load_checkpoint
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_core.use.load_run import available_checkpoints, load_run

from .trained import one_thread, train_run  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tel_core.registry.registry import Registry

    registry = Registry()
    registry.load_entry_points()
    changes = {"train": {"checkpoint_every": 3}}
    return train_run(tmp_path_factory.mktemp("loading"), registry, changes)


def test_the_run_directory_alone_gives_back_the_trained_model(trained, tmp_path, registry):
    # Copied elsewhere, without its data: the model needs none of it.
    copy = shutil.copytree(trained, tmp_path / "copy")
    loaded = tel_core.load_run(copy, "latest", registry=registry, device="cpu")
    state = load_checkpoint(trained / "checkpoints" / "latest.pt")
    for key, value in state["model"].items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert not loaded.model.training
    assert loaded.step == 6 and loaded.checkpoint == "latest"
    last = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()][-1]
    assert loaded.val_loss == last["val/loss"]
    assert loaded.tokenizer.decode(loaded.encode("the fox")) == "the fox"


def test_checkpoints_are_named_best_latest_step_or_a_path(trained, registry):
    assert available_checkpoints(trained) == ["best", "latest", "step:3", "step:6"]
    assert load_run(trained, registry=registry).checkpoint == "best"  # the default
    step3 = load_run(trained, "step:3", registry=registry)
    assert step3.step == 3 and step3.checkpoint == "step_0000003"
    path = trained / "checkpoints" / "step_0000003.pt"
    assert load_run(trained, str(path), registry=registry).step == 3


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("bset", "unknown --checkpoint 'bset': give best, latest, step:N"),
        ("step:9", "has no checkpoint step:9"),
        ("step:x", "N in step:N must be a number"),
        ("elsewhere/none.pt", "no such file"),
    ],
)
def test_an_unknown_checkpoint_is_one_line(trained, registry, spec, fragment):
    with pytest.raises(TelError) as error:
        load_run(trained, spec, registry=registry)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_run_directory_without_checkpoints(trained, tmp_path, registry):
    bare = shutil.copytree(trained, tmp_path / "bare", ignore=shutil.ignore_patterns("*.pt"))
    with pytest.raises(TelError, match="has no checkpoint"):
        load_run(bare, registry=registry)
    with pytest.raises(TelError, match="not a tel run directory"):
        load_run(tmp_path / "nowhere", registry=registry)


def test_a_checkpoint_of_another_architecture_is_refused(trained, tmp_path, registry):
    other = train_run(tmp_path, registry, {"model": {"n_layers": 1}})
    with pytest.raises(TelError) as error:
        load_run(trained, str(other / "checkpoints" / "best.pt"), registry=registry)
    assert "holds another model" in str(error.value)
    assert "model.n_layers (1 -> 2)" in str(error.value)


def test_a_plugin_that_is_not_installed_names_its_distribution(trained, tmp_path, registry):
    copy = shutil.copytree(trained, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = next(p for p in manifest["plugins"] if p["kind"] == "attention")
    entry.update(name="talking_heads", distribution="tel-extras", version="0.1.0")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    config = (copy / "config.toml").read_text().replace('name = "causal"', 'name = "talking_heads"')
    (copy / "config.toml").write_text(config)
    with pytest.raises(TelError) as error:
        load_run(copy, registry=registry)
    assert str(error.value) == (
        f"{copy} was trained with attention 'talking_heads' from tel-extras 0.1.0, which is "
        f"not installed here; install it (pip install 'tel-extras==0.1.0')"
    )


def test_learned_positions_cannot_run_longer_than_trained(trained, registry):
    with pytest.raises(TelError) as error:
        load_run(trained, block_size=32, registry=registry)
    message = str(error.value)
    assert "positional 'learned' has weights for the trained block_size 16 only" in message
    assert load_run(trained, block_size=8, registry=registry).block_size == 16  # shorter: fine


def test_resume_from_a_named_checkpoint(trained, tmp_path, registry, tiny):
    """--resume PATH continues from that checkpoint: the steps after it are the same."""
    tiny["train"].update(checkpoint_every=3)
    tiny["data"]["dataset"]["paths"] = [str(trained.parent / "corpus.txt")]
    run_dir = tmp_path / "again"
    shutil.copytree(trained, run_dir)
    snapshot = run_dir / "checkpoints" / "step_0000003.pt"
    run(experiment_from_dict(tiny, registry), run_dir, registry, resume=snapshot)
    whole = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["train/loss"]) for r in again if "train/loss" in r]
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6]  # steps 4-6 once, after step 3
    assert losses == [(r["step"], r["train/loss"]) for r in whole if "train/loss" in r]
    with pytest.raises(TelError, match="no such checkpoint"):
        run(experiment_from_dict(tiny, registry), run_dir, registry, resume=tmp_path / "x.pt")


def test_tel_run_resume_takes_a_checkpoint_path(trained, tmp_path, tiny, capsys):
    import tomli_w

    from tel_core.cli import main

    tiny["train"].update(checkpoint_every=3)
    tiny["data"]["dataset"]["paths"] = [str(trained.parent / "corpus.txt")]
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(tiny))
    run_dir = shutil.copytree(trained, tmp_path / "again")
    snapshot = run_dir / "checkpoints" / "step_0000003.pt"
    assert main(["run", str(path), "--run-dir", str(run_dir), "--resume", str(snapshot)]) == 0
    assert "resuming after step 3" in capsys.readouterr().out


def test_a_run_is_used_with_its_own_precision_settings(trained, tmp_path, registry, monkeypatch):
    """eval, generate and chat compute as training did: a run trained with tf32 = false is
    evaluated without TF32 (process-wide on CUDA), and "auto" sees the run's width."""
    copy = shutil.copytree(trained, tmp_path / "copy")
    config = (copy / "config.toml").read_text()
    assert "tf32 = true" in config
    (copy / "config.toml").write_text(config.replace("tf32 = true", "tf32 = false"))
    seen = []
    real = load_run_module.Precision

    def spy(*args, **kwargs):
        precision = real(*args, **kwargs)
        seen.append((args, kwargs))
        return precision

    monkeypatch.setattr(load_run_module, "Precision", spy)
    loaded = tel_core.load_run(copy, "latest", registry=registry, device="cpu")
    assert loaded.precision.tf32 is False
    (_setting, _device, d_model, _compiled), kwargs = seen[-1]
    assert d_model == loaded.experiment.model.d_model == 32 and kwargs == {"tf32": False}
    assert tel_core.load_run(trained, "latest", registry=registry, device="cpu").precision.tf32
