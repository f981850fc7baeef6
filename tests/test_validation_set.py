"""The validation set: the same rows for every batch size, recorded in the manifest."""

from __future__ import annotations

import json

from tel_core.config.loader import merge
from tel_core.data.batching import VAL_BATCH_ROWS
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run


def test_runs_with_different_batch_sizes_are_scored_on_the_same_rows(tmp_path, tiny, registry):
    described = []
    for i, train in enumerate(({"batch_size": 4}, {"batch_size": 8, "micro_batch_size": 2})):
        config = merge(tiny, {"train": {**train, "max_steps": 2, "eval_every": 2}})
        experiment = experiment_from_dict(config, registry)
        run(experiment, tmp_path / f"run{i}", registry=registry)
        manifest = json.loads((tmp_path / f"run{i}" / "manifest.json").read_text())
        described.append(manifest["validation"])
    assert described[0] == described[1]
    assert described[0]["rows"] == tiny["train"]["eval_batches"] * VAL_BATCH_ROWS
    assert described[0]["targets"] == described[0]["rows"] * tiny["data"]["block_size"]
