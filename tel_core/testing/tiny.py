"""``train_tiny``: train a tiny model with chosen components for a few steps.

The conformance checks look at one component alone; this puts it in a whole model,
trained by the real loop on a small text, so that a plugin's tests can see it learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from tel_core.config.loader import merge
from tel_core.registry.registry import Registry, default_registry
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.loop import RunResult
from tel_core.train.run import run

#: The components ``train_tiny`` accepts, and where each goes in the experiment.
COMPONENT_KEYS: dict[str, tuple[str, ...]] = {
    "dataset": ("data", "dataset"),
    "tokenizer": ("data", "tokenizer"),
    "attention": ("model", "attention"),
    "positional": ("model", "positional"),
    "norm": ("model", "norm"),
    "ffn": ("model", "ffn"),
    "optimizer": ("optimizer",),
    "schedule": ("schedule",),
    "loggers": ("loggers",),
    "probes": ("probes",),
}

_LINE = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"


@attrs.frozen
class TinyRun:
    """What a tiny run left behind."""

    run_dir: Path
    result: RunResult
    losses: list[float]  # the training loss of every step
    records: list[dict[str, Any]]  # every line of metrics.jsonl

    @property
    def learned(self) -> bool:
        """Whether the mean loss of the last quarter of the steps is below the first's."""
        k = max(1, len(self.losses) // 4)
        return sum(self.losses[-k:]) < sum(self.losses[:k])


def train_tiny(
    directory: str | Path,
    *,
    steps: int = 8,
    seed: int = 0,
    registry: Registry | None = None,
    config: dict[str, Any] | None = None,
    **components: Any,
) -> TinyRun:
    """Train a 2-layer, 32-wide model for ``steps`` steps, writing its run into ``directory``.

    ``components`` choose parts by name, or by a table of name and options, as in an
    experiment file: ``train_tiny(tmp_path, norm="scalenorm", attention={"name": "x",
    "heads_mix": True})``; keys are those of ``tel_core.testing.COMPONENT_KEYS``.
    Anything else in the experiment can be changed through ``config`` (merged as an
    ``extends`` child would be). By default the run reads a small text written into
    ``directory``, with the char tokenizer and AdamW at a constant learning rate. A loss
    that stops being finite raises ``TelError``, as in ``tel run``.
    """
    unknown = set(components) - set(COMPONENT_KEYS)
    if unknown:
        raise TypeError(
            f"train_tiny() got unknown components {sorted(unknown)}; use {sorted(COMPONENT_KEYS)}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text("".join(f"{i} {_LINE}" for i in range(60)), encoding="utf-8")
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": seed,
        "data": {
            "dataset": {"name": "text", "paths": [str(corpus)]},
            "tokenizer": "char",
            "block_size": 16,
        },
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 4},
        "optimizer": {"name": "adamw", "lr": 1e-2},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 4, "max_steps": steps, "eval_every": steps, "eval_batches": 1},
        "sample": {"max_new_tokens": 8},
        "loggers": [],
    }
    for name, value in components.items():
        *parents, key = COMPONENT_KEYS[name]
        node: dict[str, Any] = {key: value}
        for parent in reversed(parents):
            node = {parent: node}
        data = merge(data, node)
    data = merge(data, config or {})
    registry = registry or default_registry()
    experiment = experiment_from_dict(data, registry, label="train_tiny")
    run_dir = directory / "run"
    result = run(experiment, run_dir, registry=registry)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    return TinyRun(run_dir, result, losses, records)
