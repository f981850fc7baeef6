"""Run directories written by hand, for the analysis tests: what a run leaves on disk
(config.toml, manifest.json, metrics.jsonl), with chosen numbers and no training."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import tomli_w

from tel_core.config.loader import merge

CONFIG: dict[str, Any] = {
    "name": "fake",
    "seed": 1,
    "data": {
        "dataset": {"name": "stdlib"},
        "tokenizer": {"name": "byte"},
        "block_size": 16,
        "val_fraction": 0.1,
        "batching": "windows",
    },
    "model": {"d_model": 32, "positional": {"name": "learned"}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.1},
    "train": {"batch_size": 16, "max_steps": 4, "eval_every": 2, "eval_batches": 2},
    "loggers": [{"name": "console"}],
}


def write_run(
    path: Path,
    final: float,
    *,
    seed: int = 1,
    config: dict[str, Any] | None = None,
    steps: int | None = None,
    diverged: bool = False,
    digest: str = "d1",
    manifest: bool = True,
    samples: str | None = None,
) -> Path:
    """A run whose val/loss falls linearly to ``final`` at max_steps (or stops early at
    ``steps``: a run still training)."""
    cfg = merge(copy.deepcopy(CONFIG), config or {})
    cfg["seed"] = seed
    cfg["name"] = f"{path.parent.name}-{path.name}"
    max_steps = cfg["train"]["max_steps"]
    reached = max_steps if steps is None else steps
    path.mkdir(parents=True)
    (path / "config.toml").write_text(tomli_w.dumps(cfg))
    if manifest:
        facts = {
            "parameters": 1000,
            "flops_per_token": 6000,
            "validation": {"rows": 32, "batching": "windows", "block_size": 16, "digest": digest},
        }
        (path / "manifest.json").write_text(json.dumps(facts))
    lines = []
    batch = cfg["train"]["batch_size"]
    for step in range(1, reached + 1):
        loss = final + (max_steps - step) * 0.5
        lines.append(
            {
                "step": step,
                "train/loss": loss + 0.1,
                "train/lr": cfg["optimizer"]["lr"],
                "train/grad_norm": 1.0 + step,
                "train/clipped": int(step == 1),
                "train/tokens": step * batch * 16,
                "train/tokens_per_s": 1000.0 * step,
                "time/elapsed_s": 2.0 * step,
                "mem/peak_mb": 100.0 + step,
            }
        )
        if step % cfg["train"]["eval_every"] == 0 or step == max_steps:
            lines.append({"step": step, "val/loss": loss, "val/bits_per_byte": loss / 0.69})
    if diverged:
        lines.append({"step": reached + 1, "train/loss": None, "train/diverged": 1})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if samples is not None:
        (path / "samples.txt").write_text(
            f"--- step {reached}, prompt 'x', temperature 0.8, top_k 50\n{samples}\n"
        )
    return path
