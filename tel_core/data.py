"""From documents to tokens: tokenize once into a cached token file.

Datasets hand out documents, tokenizers turn them into ids, and this module owns what
lies between: concatenation, document boundaries and the token cache. Cutting batches
from the tokens is ``tel_core.batching``'s job. Keeping the three apart lets any dataset
meet any tokenizer and any batching mode.
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

from tel_core.config import DataConfig
from tel_core.config_loader import to_dict
from tel_core.errors import TelError
from tel_core.interfaces import Dataset, Tokenizer

CACHE_FORMAT = 2  # bump when the layout of cached token files changes


@attrs.frozen
class TokenSplits:
    train: np.ndarray  # 1-D token ids, documents concatenated
    val: np.ndarray
    cache_dir: Path | None  # where they were cached, if they were
    #: Document boundaries: document i is ``train[train_offsets[i]:train_offsets[i + 1]]``
    #: (its end-of-document token included, if the tokenizer has one).
    train_offsets: np.ndarray
    val_offsets: np.ndarray


def cache_root() -> Path:
    return Path(os.environ.get("TEL_CACHE_DIR") or Path.home() / ".cache" / "tel")


def tokenize_documents(
    documents: Iterable[str], tokenizer: Tokenizer
) -> tuple[np.ndarray, np.ndarray]:
    """All documents' ids concatenated, and the offsets where each document starts and ends.

    Each document is followed by ``eos_id`` if the tokenizer has one. The offsets hold
    ``n_documents + 1`` numbers, the last being the total length.
    """
    pieces = []
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    lengths = []
    for doc in documents:
        ids = np.asarray(tokenizer.encode(doc), dtype=np.int64)
        pieces.append(ids)
        if eos:
            pieces.append(np.asarray(eos, dtype=np.int64))
        lengths.append(len(ids) + len(eos))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    # uint16 halves the file (and the memory) for every vocabulary below 65536.
    return ids.astype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32), offsets


def prepare_tokens(cfg: DataConfig, dataset: Dataset, tokenizer: Tokenizer) -> TokenSplits:
    """Fit the tokenizer and tokenize both splits, reusing the cache when it matches."""
    fingerprint = dataset.fingerprint()
    if fingerprint is None:
        tokenizer.fit(dataset.documents("train"))
        train, train_offsets = tokenize_documents(dataset.documents("train"), tokenizer)
        val, val_offsets = tokenize_documents(dataset.documents("val"), tokenizer)
        return TokenSplits(train, val, None, train_offsets, val_offsets)
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
        arrays = {}
        for split in ("train", "val"):
            ids, offsets = tokenize_documents(dataset.documents(split), tokenizer)
            arrays[split], arrays[f"{split}_offsets"] = ids, offsets
        _write_cache(directory, key, tokenizer, arrays)
    state = json.loads((directory / "tokenizer.json").read_text())
    tokenizer.load_state_dict(state)
    return TokenSplits(
        np.load(directory / "train.npy", mmap_mode="r"),
        np.load(directory / "val.npy", mmap_mode="r"),
        directory,
        np.load(directory / "train_offsets.npy"),
        np.load(directory / "val_offsets.npy"),
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
