"""wandb: an offline W&B run written for real and read back from its files."""

from __future__ import annotations

import json
import sys

import pytest

from tel_core.errors import TelError
from tel_core.registry.interfaces import LoggerContext
from tel_core.testing import check_logger
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_plugins.loggers.wandb_run import ID_FILE, WandbLogger, WandbOptions

from ..trackers import (
    jsonl,
    metric,
    wandb_config,
    wandb_history,
    wandb_run,
    wandb_runs,
    wandb_summary,
)

OFFLINE = {"name": "wandb", "mode": "offline", "tags": ["probe-test"], "group": "tests"}


@pytest.mark.parametrize("options", [{"mode": "offline"}, {"mode": "disabled", "name": "x"}])
def test_conforms(registry, tmp_path, options):
    check_logger("wandb", options, registry=registry, run_dir=tmp_path / "run")


def test_an_offline_run_holds_metrics_config_probes_and_samples(tel_train):
    run_ = tel_train(
        steps=4,
        loggers=[OFFLINE],
        probes=[
            {"name": "grad_norms", "every": 2, "histograms": True},
            {"name": "attention", "every": 4, "rows": 2},
        ],
    )
    (offline,) = wandb_runs(run_.run_dir)
    record = wandb_run(offline)
    assert record.display_name == "tiny" and record.project == "tel"
    assert list(record.tags) == ["probe-test"] and record.run_group == "tests"
    assert (run_.run_dir / ID_FILE).read_text().strip() == record.run_id
    config = wandb_config(offline)
    assert config["model"]["d_model"] == 32 and config["train"]["max_steps"] == 4

    history = {row["_step"]: row for row in wandb_history(offline)}
    for key in ("train/loss", "val/loss", "grad_norm/blocks.0.attn", "attn/entropy/layer1"):
        assert metric(run_.records, key) == {s: r[key] for s, r in history.items() if key in r}
    assert history[2]["grad_hist/blocks.0/_type"] == "histogram"
    histogram = next(
        r
        for r in jsonl(run_.run_dir / "probes" / "histograms.jsonl")
        if r["name"] == "grad_hist/blocks.0" and r["step"] == 2
    )
    assert history[2]["grad_hist/blocks.0/values"] == histogram["counts"]
    assert history[2]["grad_hist/blocks.0/bins"] == histogram["edges"]
    assert history[4]["attn/heatmap/layer0/_type"] == "image-file"
    assert (offline / "files" / history[4]["attn/heatmap/layer0/path"]).is_file()
    table = json.loads((offline / "files" / history[4]["samples/path"]).read_text())
    assert table["columns"] == ["prompt", "text", "step"]
    assert table["data"] == [["\n", run_.result.sample, 4]]
    assert wandb_summary(offline)["train/loss"] == run_.losses[-1]
    saved = json.loads((offline / "files" / "manifest.json").read_text())
    assert saved == json.loads((run_.run_dir / "manifest.json").read_text())


def test_resume_continues_the_same_wandb_run_and_a_new_run_starts_another(tiny, tmp_path, registry):
    tiny["loggers"] = [OFFLINE]
    tiny["train"].update(max_steps=4, eval_every=2)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    tiny["train"]["max_steps"] = 6
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, overwrite=True)
    first, resumed, fresh = (wandb_run(r).run_id for r in wandb_runs(tmp_path / "run"))
    assert first == resumed != fresh
    (_, second, _) = wandb_runs(tmp_path / "run")
    assert [row["_step"] for row in wandb_history(second) if "train/loss" in row] == [5, 6]


def test_without_the_package_one_line_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets when absent
    ctx = LoggerContext(tmp_path, "t", max_steps=2, start_step=0, config={})
    with pytest.raises(
        TelError, match=r"^logger 'wandb' needs the wandb package: pip install 'tel\[wandb\]'$"
    ):
        WandbLogger(WandbOptions(mode="offline"), ctx)


def test_online_without_an_account_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no W&B settings
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    ctx = LoggerContext(tmp_path, "t", max_steps=2, start_step=0, config={})
    with pytest.raises(TelError) as excinfo:
        WandbLogger(WandbOptions(mode="online"), ctx)
    message = str(excinfo.value)
    assert message.startswith("logger 'wandb' could not start a W&B run: ")
    assert message.endswith('set mode = "offline" in [[loggers]] to log without an account)')
    assert "\n" not in message
