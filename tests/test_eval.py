"""tel eval: the loop's own scoring, over a whole split or the run's validation rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tel_core.data.batching import IGNORE_INDEX, split_rows
from tel_core.use.evaluate import evaluate_run, save_result
from tel_core.use.load_run import load_run

from .trained import one_thread, train_run, write_corpus  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def module_registry():
    from tel_core.registry.registry import Registry

    registry = Registry()
    registry.load_entry_points()
    return registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory, module_registry):
    """A run with micro-batches and rope (which may run longer than trained)."""
    changes = {"model": {"positional": "rope"}, "train": {"micro_batch_size": 2}}
    return train_run(tmp_path_factory.mktemp("eval"), module_registry, changes)


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_runs_eval_batches_reproduce_its_last_val_loss_exactly(trained, module_registry):
    last = [r for r in records(trained) if "val/loss" in r][-1]
    loaded = load_run(trained, "latest", registry=module_registry)
    result = evaluate_run(loaded, batches=loaded.experiment.train.eval_batches)
    for key in ("loss", "ppl", "bits_per_token", "bits_per_byte", "accuracy", "accuracy_top5"):
        assert result.metrics[key] == last[f"val/{key}"], key


def test_the_whole_split_scores_every_target_once(trained, module_registry):
    loaded = load_run(trained, "latest", registry=module_registry)
    result = evaluate_run(loaded)
    n_val = loaded.manifest["tokens"]["val"]
    assert result.tokens == n_val - 1  # every token but the first is a target, once
    assert result.rows == -(-(n_val - 1) // 16)
    assert len(result.loss_by_position) == 16
    assert evaluate_run(loaded).metrics == result.metrics  # deterministic
    # The mean of the curve, weighted by the targets at each position, is the loss.
    counts = [result.rows] * 16
    counts[(n_val - 1) % 16 :] = [result.rows - 1] * (16 - (n_val - 1) % 16)
    weighted = sum(c * n for c, n in zip(result.loss_by_position, counts, strict=True))
    assert weighted / sum(counts) == pytest.approx(result.metrics["loss"], rel=1e-6)
    json_path, plot = save_result(result)
    assert json_path == trained / "eval" / "latest-val.json"
    assert json.loads(json_path.read_text())["metrics"] == result.metrics
    assert plot is not None and plot.read_bytes().startswith(b"\x89PNG")


def test_split_rows_cover_every_target_once_in_both_modes():
    tokens = np.arange(23)
    offsets = np.array([0, 5, 6, 23])  # documents of 5, 1 and 17 tokens
    for mode, expected in (("windows", list(range(1, 23))), ("pad", [*range(1, 5), *range(7, 23)])):
        pieces = split_rows(mode, tokens, offsets, 4, micro_size=3)
        targets = np.concatenate([y.numpy().ravel() for _, y in pieces])
        assert sorted(targets[targets != IGNORE_INDEX].tolist()) == expected
        for x, y in pieces:  # each target follows its input
            real = y != IGNORE_INDEX
            both = real[:, 1:]  # where the next input is real too
            assert (y[:, :-1][both] == x[:, 1:][both]).all()


def test_a_longer_block_measures_extrapolation(trained, module_registry):
    loaded = load_run(trained, block_size=32, registry=module_registry)
    result = evaluate_run(loaded, block_size=32)
    assert result.name == "best-val-T32" and len(result.loss_by_position) == 32
    assert {"loss_within_trained", "loss_beyond_trained"} <= set(result.metrics)


def test_another_dataset_is_tokenized_by_the_runs_tokenizer(trained, module_registry, tmp_path):
    other = write_corpus(tmp_path / "other.txt", lines=50)
    overrides = [f'data.dataset.paths=["{other}"]']
    loaded = load_run(trained, data_overrides=overrides, registry=module_registry)
    result = evaluate_run(loaded, data_overrides=overrides)
    text = other.read_text()
    assert result.tokens == len(text) - int(len(text) * 0.9) - 1  # the val tenth
    assert result.name.startswith("best-val-data")
    assert (
        loaded.tokenizer.state_dict()
        == load_run(trained, registry=module_registry).tokenizer.state_dict()
    )
