"""Shared fixtures: an isolated token cache, a fresh registry, and tiny experiments."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tel_core.registry.registry import KINDS, Registry

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

#: A model small enough to train a few steps in well under a second.
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 7,
    "data": {"dataset": {"name": "text", "paths": []}, "tokenizer": "char", "block_size": 16},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 4},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "schedule": {"name": "cosine", "warmup_steps": 2, "min_lr": 3e-4},
    "train": {"batch_size": 4, "max_steps": 6, "eval_every": 3, "eval_batches": 2},
    "sample": {"max_new_tokens": 8},
    "loggers": [],
}


def pytest_configure(config: pytest.Config) -> None:
    """Torch on one thread, in this process and in every process a test starts (tel run,
    torchrun, a sweep's members): the tests' tiny models gain nothing from more, and
    OpenMP threads that spin while they wait cost many-fold when other processes want
    the cores (a busy machine, or the other worker of ``pytest -n 2``). Numbers do not
    depend on it: every comparison in the suite is between runs under the same setting."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip, saying why, where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none here)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tests' token caches out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TEL_CACHE_DIR", str(tmp_path_factory.mktemp("tel-cache")))
    yield
    mp.undo()


@pytest.fixture
def registry() -> Registry:
    """A registry of every installed plugin, private to one test."""
    registry = Registry()
    registry.load_entry_points()
    return registry


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small text file: enough for a tiny model's windows in both splits."""
    path = tmp_path / "corpus.txt"
    line = "the quick brown fox jumps over the lazy dog. "
    path.write_text("".join(f"{i}: {line}\n" for i in range(200)))
    return path


@pytest.fixture
def paragraphs(tmp_path: Path) -> Path:
    """Paragraphs of 2 to 40 characters, separated by blank lines: padded rows of unequal
    lengths for a block size of 16."""
    text = "the quick brown fox jumps over the lazy dog. " * 2
    parts = [text[i % 9 * 4 :][: 2 + (i * 7) % 39] for i in range(400)]
    path = tmp_path / "paragraphs.txt"
    path.write_text("\n\n".join(parts))
    return path


@pytest.fixture
def tiny(corpus: Path) -> dict[str, Any]:
    """The TINY experiment as a fresh dict, reading ``corpus``."""
    config = copy.deepcopy(TINY)
    config["data"]["dataset"]["paths"] = [str(corpus)]
    return config


def builtin_components(kinds: tuple[str, ...] = tuple(KINDS)) -> list[tuple[str, str]]:
    """(kind, name) of every component tel itself ships, for parametrising tests."""
    registry = Registry()
    registry.load_entry_points()
    return [
        (kind, name)
        for kind in KINDS
        if kind in kinds
        for name, c in sorted(registry.components(kind).items())
        if c.source.distribution == "tel"
    ]
