"""From documents to tokens: tokenize once into a cached token file.

Datasets hand out documents, tokenizers turn them into ids, and this module owns what
lies between: document boundaries and the token cache. Tokenizing itself streams, chunk
by chunk (``tel_core.data.token_stream``); cutting batches from the tokens is
``tel_core.data.batching``'s job. Keeping the three apart lets any dataset meet any tokenizer
and any batching mode.

The cache is keyed on everything that decides the ids: the dataset's and the tokenizer's
selections (names and options), the distribution, version and module of each plugin, the
split fraction, the dataset's fingerprint (its content) and the tokenizer's (a file it
loads, say). A hit costs the two fingerprints and a directory lookup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from tel_core.config.schema import DataConfig
from tel_core.config.serialise import to_dict
from tel_core.data.token_stream import (
    CHUNK_CHARS,
    SplitStats,
    TokenizeProgress,
    TokenWriter,
    texts,
    token_dtype,
    tokenize_split,
)
from tel_core.errors import TelError
from tel_core.registry.interfaces import Dataset, Document, Tokenizer, document_text

CACHE_FORMAT = 3  # bump when the layout of cached token files changes
SPLITS = ("train", "val")


@attrs.frozen
class TokenSplits:
    train: np.ndarray  # 1-D token ids, documents concatenated
    val: np.ndarray
    cache_dir: Path | None  # where they were cached, if they were
    #: Document boundaries: document i is ``train[train_offsets[i]:train_offsets[i + 1]]``
    #: (its end-of-document token included, if the tokenizer has one).
    train_offsets: np.ndarray
    val_offsets: np.ndarray
    #: Per split: documents, tokens, bytes, seconds it took, whether a budget cut it.
    stats: Mapping[str, SplitStats] = attrs.field(factory=dict)
    from_cache: bool = False  # read from a cache an earlier run (or process) wrote


def cache_root() -> Path:
    return Path(os.environ.get("TEL_CACHE_DIR") or Path.home() / ".cache" / "tel")


def tokenize_documents(
    documents: Iterable[Document], tokenizer: Tokenizer
) -> tuple[np.ndarray, np.ndarray]:
    """All documents' ids concatenated, and the offsets where each document starts and ends,
    in memory, one ``encode`` call per whole document: for small data and for tests (the
    token cache streams instead, with the same result).

    Each document is followed by ``eos_id`` if the tokenizer has one. The offsets hold
    ``n_documents + 1`` numbers, the last being the total length.
    """
    pieces = []
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    lengths = []
    for doc in documents:
        ids = np.asarray(tokenizer.encode(document_text(doc)), dtype=np.int64)
        pieces.append(ids)
        if eos:
            pieces.append(np.asarray(eos, dtype=np.int64))
        lengths.append(len(ids) + len(eos))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    return ids.astype(token_dtype(tokenizer)), offsets


def plugin_source(registry: Any, kind: str, name: str, component: object) -> dict[str, Any]:
    """The distribution, version and module a component comes from (for the cache key)."""
    try:
        return attrs.asdict(registry.get(kind, name).source)
    except TelError:  # built by hand, outside the registry: its module is all we know
        return {"module": type(component).__module__}


def cache_key(
    cfg: DataConfig, dataset: Dataset, tokenizer: Tokenizer, registry: Any = None
) -> dict[str, Any] | None:
    """Everything that decides the ids, or None for a dataset without a fingerprint."""
    fingerprint = dataset.fingerprint()
    if fingerprint is None:
        return None
    if registry is None:
        from tel_core.registry.registry import default_registry

        registry = default_registry()
    return {
        "format": CACHE_FORMAT,
        "dataset": to_dict(cfg.dataset),
        "tokenizer": to_dict(cfg.tokenizer),
        "val_fraction": cfg.val_fraction,
        "plugins": {
            "dataset": plugin_source(registry, "dataset", cfg.dataset.name, dataset),
            "tokenizer": plugin_source(registry, "tokenizer", cfg.tokenizer.name, tokenizer),
        },
        "fingerprints": {"dataset": fingerprint, "tokenizer": tokenizer.fingerprint()},
    }


def cache_dir(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "tokens" / digest


def prepare_tokens(
    cfg: DataConfig,
    dataset: Dataset,
    tokenizer: Tokenizer,
    registry: Any = None,
    *,
    progress: bool = True,
    chunk_chars: int = CHUNK_CHARS,
    announce: Callable[[], None] | None = None,
) -> TokenSplits:
    """Fit the tokenizer and tokenize both splits, reusing the cache when it matches.

    A dataset without a fingerprint is tokenized afresh, into files that are mapped and
    deleted at once (the memory stays bounded all the same). ``registry`` (default: every
    installed plugin) says which distribution each plugin comes from. ``announce`` is
    called just before tokenizing, and not at all when the cache holds the tokens.
    """
    key = cache_key(cfg, dataset, tokenizer, registry)
    cached = key is not None and (cache_dir(key) / "key.json").is_file()
    if announce is not None and not cached:
        announce()
    if key is None:
        scratch = cache_root() / "tokens"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".uncached-") as tmp:
            _build(Path(tmp), dataset, tokenizer, progress, chunk_chars)
            # Mapped, then deleted: the mapping outlives the files (on POSIX systems).
            return attrs.evolve(_load(Path(tmp), tokenizer), cache_dir=None)
    directory = cache_dir(key)
    from_cache = (directory / "key.json").is_file()
    if not from_cache:
        _write_cache(directory, key, dataset, tokenizer, progress, chunk_chars)
    return attrs.evolve(_load(directory, tokenizer), from_cache=from_cache)


def _build(
    directory: Path, dataset: Dataset, tokenizer: Tokenizer, progress: bool, chunk_chars: int
) -> None:
    """Fit the tokenizer on the training split, then tokenize both splits into ``directory``."""
    tokenizer.fit(texts(dataset.documents("train")))
    dtype = token_dtype(tokenizer)
    stats = {}
    for split in SPLITS:
        with TokenWriter(directory, split, dtype) as writer:
            stats[split] = tokenize_split(
                dataset.documents(split),
                tokenizer,
                writer,
                budget=dataset.token_budget(split),
                chunk_chars=chunk_chars,
                progress=TokenizeProgress(split, enabled=progress),
            )
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer.state_dict()))
    meta = {"dtype": dtype.name, "splits": {s: attrs.asdict(v) for s, v in stats.items()}}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2))


def _write_cache(
    directory: Path,
    key: Mapping[str, Any],
    dataset: Dataset,
    tokenizer: Tokenizer,
    progress: bool,
    chunk_chars: int,
) -> None:
    """Build into a temporary folder, then rename: readers never see half a cache."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    try:
        _build(tmp, dataset, tokenizer, progress, chunk_chars)
        # key.json last: a cache directory holding it is complete.
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
        os.replace(tmp, directory)
    except OSError:
        if (directory / "key.json").is_file():  # another process won the race: as good
            return
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _map(path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    if length == 0:  # an empty file cannot be mapped
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


def _load(directory: Path, tokenizer: Tokenizer) -> TokenSplits:
    """The token files of a built directory, memory-mapped, and the tokenizer's state."""
    meta = json.loads((directory / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    stats = {s: SplitStats(**meta["splits"][s]) for s in SPLITS}
    tokenizer.load_state_dict(json.loads((directory / "tokenizer.json").read_text()))
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays[split] = _map(directory / f"{split}.bin", dtype, stats[split].tokens)
        arrays[f"{split}_offsets"] = np.fromfile(directory / f"{split}_offsets.bin", np.int64)
    return TokenSplits(
        arrays["train"],
        arrays["val"],
        directory,
        arrays["train_offsets"],
        arrays["val_offsets"],
        stats,
    )


def check_length(tokens: np.ndarray, block_size: int, split: str, dataset: str) -> None:
    if len(tokens) < block_size + 1:
        raise TelError(
            f"the {split} split of dataset {dataset!r} has {len(tokens)} tokens, fewer than "
            f"block_size + 1 = {block_size + 1}; use more data or a smaller block_size"
        )
