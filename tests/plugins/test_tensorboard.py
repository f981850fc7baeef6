"""tensorboard: event files written for real and read back with TensorBoard's own reader."""

from __future__ import annotations

import sys

import pytest

from tel_core.errors import TelError
from tel_core.testing import check_logger
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_plugins.loggers.tensorboard_events import flat_hparams, summary_writer

from ..trackers import jsonl, metric, tensorboard_events, tensorboard_scalars


@pytest.mark.parametrize("options", [None, {"dir": "tb/events", "flush_secs": 1}])
def test_conforms(registry, tmp_path, options):
    check_logger("tensorboard", options, registry=registry, run_dir=tmp_path / "run")


def test_events_hold_scalars_histograms_images_text_and_hparams(tel_train):
    run_ = tel_train(
        steps=4,
        loggers=[{"name": "tensorboard"}],
        probes=[
            {"name": "grad_norms", "every": 2, "histograms": True},
            {"name": "attention", "every": 4, "rows": 2},
        ],
    )
    events = tensorboard_events(run_.run_dir / "tensorboard")
    for key in ("train/loss", "val/accuracy", "grad_norm/blocks.1.ffn", "attn/sink/layer0"):
        logged = metric(run_.records, key)
        assert logged and tensorboard_scalars(run_.run_dir / "tensorboard", key) == pytest.approx(
            logged, rel=1e-6
        ), key
    histograms = {
        (r["name"], r["step"]): r for r in jsonl(run_.run_dir / "probes" / "histograms.jsonl")
    }
    for event in events.Histograms("attn/distance_hist/layer1"):
        written = histograms["attn/distance_hist/layer1", event.step]
        assert list(event.histogram_value.bucket) == pytest.approx(written["counts"], rel=1e-6)
        assert list(event.histogram_value.bucket_limit) == pytest.approx(written["edges"][1:])
    (image,) = events.Images("attn/heatmap/layer0")
    assert (image.step, image.height, image.width) == (4, 16, 4 * 16 + 3 * 2)
    (sample,) = events.Tensors("sample/text_summary")
    text = sample.tensor_proto.string_val[0].decode()
    assert text == "\n".join("    " + line for line in run_.result.sample.split("\n"))
    hparams = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"model.d_model" in hparams and b"optimizer.lr" in hparams


def test_a_resumed_run_drops_the_events_after_its_checkpoint(tiny, tmp_path, registry):
    tiny["loggers"] = [{"name": "tensorboard"}]
    tiny["train"].update(max_steps=5, eval_every=5, checkpoint_every=3)
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    # As if the run had been killed after step 5 with its last checkpoint at step 3:
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "step_0000003.pt").replace(checkpoints / "latest.pt")
    tiny["train"]["max_steps"] = 6
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry, resume=True)
    steps = [
        e.step for e in tensorboard_events(tmp_path / "run" / "tensorboard").Scalars("train/loss")
    ]
    assert steps == [1, 2, 3, 4, 5, 6]  # 4 and 5 once: purged, then trained again
    records = jsonl(tmp_path / "run" / "metrics.jsonl")
    assert tensorboard_scalars(tmp_path / "run" / "tensorboard", "train/loss") == pytest.approx(
        metric(records, "train/loss"), rel=1e-6
    )


def test_hparams_are_the_config_flattened():
    config = {"seed": 1, "model": {"d_model": 32, "attention": {"name": "causal"}}, "tags": [1, 2]}
    assert flat_hparams({**config, "none": None}) == {
        "seed": 1,
        "model.d_model": 32,
        "model.attention.name": "causal",
        "tags": "[1, 2]",
    }


def test_without_the_package_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(TelError, match=r"pip install 'tel\[tensorboard\]'$"):
        summary_writer()
