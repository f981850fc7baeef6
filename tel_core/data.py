"""From documents to batches: tokenize once into a cached token file, then cut windows.

Datasets hand out documents, tokenizers turn them into ids, and this module owns what
lies between: concatenation, the token cache, and the windows the model trains on.
Keeping the three apart lets any dataset meet any tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from tel_core.config import DataConfig
from tel_core.config_loader import to_dict
from tel_core.errors import TelError
from tel_core.interfaces import Dataset, Tokenizer

CACHE_FORMAT = 1  # bump when the layout of cached token files changes


@attrs.frozen
class TokenSplits:
    train: np.ndarray  # 1-D token ids, documents concatenated
    val: np.ndarray
    cache_dir: Path | None  # where they were cached, if they were


def cache_root() -> Path:
    return Path(os.environ.get("TEL_CACHE_DIR") or Path.home() / ".cache" / "tel")


def tokenize(documents: Iterable[str], tokenizer: Tokenizer) -> np.ndarray:
    """All documents' ids in one array, each document followed by ``eos_id`` if there is one."""
    pieces = []
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    for doc in documents:
        pieces.append(np.asarray(tokenizer.encode(doc), dtype=np.int64))
        if eos:
            pieces.append(np.asarray(eos, dtype=np.int64))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    # uint16 halves the file (and the memory) for every vocabulary below 65536.
    return ids.astype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32)


def prepare_tokens(cfg: DataConfig, dataset: Dataset, tokenizer: Tokenizer) -> TokenSplits:
    """Fit the tokenizer and tokenize both splits, reusing the cache when it matches."""
    fingerprint = dataset.fingerprint()
    if fingerprint is None:
        tokenizer.fit(dataset.documents("train"))
        return TokenSplits(
            tokenize(dataset.documents("train"), tokenizer),
            tokenize(dataset.documents("val"), tokenizer),
            None,
        )
    key = {
        "format": CACHE_FORMAT,
        "dataset": to_dict(cfg.dataset),
        "tokenizer": to_dict(cfg.tokenizer),
        "fingerprint": fingerprint,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    directory = cache_root() / "tokens" / digest
    if not (directory / "val.npy").is_file():
        tokenizer.fit(dataset.documents("train"))
        _write_cache(
            directory,
            key,
            tokenizer,
            {
                "train": tokenize(dataset.documents("train"), tokenizer),
                "val": tokenize(dataset.documents("val"), tokenizer),
            },
        )
    state = json.loads((directory / "tokenizer.json").read_text())
    tokenizer.load_state_dict(state)
    return TokenSplits(
        np.load(directory / "train.npy", mmap_mode="r"),
        np.load(directory / "val.npy", mmap_mode="r"),
        directory,
    )


def _write_cache(
    directory: Path, key: dict[str, Any], tokenizer: Tokenizer, splits: dict[str, np.ndarray]
) -> None:
    """Write into a temporary folder, then rename: readers never see half a cache."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    try:
        for name, ids in splits.items():
            np.save(tmp / f"{name}.npy", ids)
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.state_dict()))
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
        os.replace(tmp, directory)
    except OSError:
        if directory.is_dir():  # another process won the race: its cache is as good
            return
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_length(tokens: np.ndarray, block_size: int, split: str, dataset: str) -> None:
    if len(tokens) < block_size + 1:
        raise TelError(
            f"the {split} split of dataset {dataset!r} has {len(tokens)} tokens, fewer than "
            f"block_size + 1 = {block_size + 1}; use more data or a smaller block_size"
        )


def _windows(
    tokens: np.ndarray, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([tokens[s : s + block_size + 1] for s in starts.tolist()]).astype(np.int64)
    batch = torch.from_numpy(rows)
    return batch[:, :-1], batch[:, 1:]  # inputs, next-token targets (B, T) each


class WindowSampler:
    """Random contiguous windows of ``block_size + 1`` tokens: inputs and shifted targets.

    Draws come from a generator of its own, so the data stream is a function of the seed
    alone (and its position can be saved and restored exactly).
    """

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int) -> None:
        self.tokens = tokens
        self.block_size = block_size
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        high = len(self.tokens) - self.block_size  # last start that leaves room for a target
        starts = torch.randint(high, (batch_size,), generator=self.generator)
        return _windows(self.tokens, starts, self.block_size)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


#: Validation windows are drawn with this seed, not the run's, so that runs with different
#: seeds are scored on the same text.
EVAL_SEED = 0


def eval_batches(
    tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of validation batches, identical at every evaluation of every run."""
    sampler = WindowSampler(tokens, block_size, EVAL_SEED)
    return [sampler.sample(batch_size) for _ in range(n_batches)]
