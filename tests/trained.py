"""Tiny trained runs for the tests of loading, eval, generate, chat and export."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from tel_core.config.loader import merge
from tel_core.registry.registry import Registry
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run

from .conftest import TINY

LINE = "the quick brown fox jumps over the lazy dog. "


def write_corpus(path: Path, lines: int = 200) -> Path:
    path.write_text("".join(f"{i}: {LINE}\n" for i in range(lines)))
    return path


def train_run(directory: Path, registry: Registry, changes: dict[str, Any] | None = None) -> Path:
    """Train TINY (6 steps, evaluated at 3 and 6) on a corpus of its own into
    ``directory / "run"``; ``changes`` merge into the experiment."""
    directory.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(TINY)
    config["data"]["dataset"]["paths"] = [str(write_corpus(directory / "corpus.txt"))]
    config = merge(config, changes or {})
    run_dir = directory / "run"
    run(experiment_from_dict(config, registry), run_dir, registry)
    return run_dir


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models run faster on one thread, and much faster on a busy machine (where
    torch's threads wait for each other); the numbers do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
