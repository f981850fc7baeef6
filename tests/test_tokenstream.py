"""Tokenizing in chunks: the same tokens as one call per whole document, in bounded memory."""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tel_plugins.datasets.text as text_module
from tel_core.data.token_cache import prepare_tokens, tokenize_documents
from tel_core.data.token_stream import TokenizeProgress, TokenWriter, tokenize_split
from tel_core.registry.interfaces import DataContext, Dataset
from tel_core.train.experiment import experiment_from_dict

from .conftest import TINY

PROSE = "Once upon a time, a naïve café owner — Zoë — counted 12 coins. Ελληνικά 漢字 🙂\n"


def data_config(registry, dataset, tokenizer):
    config = copy.deepcopy(TINY)
    config["data"].update(dataset=dataset, tokenizer=tokenizer)
    return experiment_from_dict(config, registry).data


def byte_tokenizer(registry):
    return registry.build("tokenizer", data_config(registry, "stdlib", "byte").tokenizer)


@pytest.fixture
def small_reads(monkeypatch):
    """The text dataset reads 61 bytes at a time and cuts parts of about 40 characters."""
    monkeypatch.setattr(text_module, "READ_BYTES", 61)
    monkeypatch.setattr(text_module, "PART_CHARS", 40)


@pytest.fixture
def prose(tmp_path) -> Path:
    path = tmp_path / "prose.txt"
    path.write_text("".join(f"{i}: {PROSE}\n" for i in range(60)), encoding="utf-8")
    return path


@pytest.mark.parametrize("separator", [None, "\n\n"])
@pytest.mark.parametrize(
    "tokenizer", ["byte", "char", {"name": "bpe", "vocab_size": 300, "min_frequency": 1}]
)
def test_tiny_chunks_give_exactly_the_unchunked_tokens(
    registry, prose, small_reads, tokenizer, separator
):
    cfg = data_config(
        registry, {"name": "text", "paths": [str(prose)], "separator": separator}, tokenizer
    )
    dataset = registry.build("dataset", cfg.dataset, DataContext(cfg.val_fraction, 0))
    tok = registry.build("tokenizer", cfg.tokenizer)
    chunked = prepare_tokens(cfg, dataset, tok, registry, progress=False, chunk_chars=7)
    for split, ids, offsets in (
        ("train", chunked.train, chunked.train_offsets),
        ("val", chunked.val, chunked.val_offsets),
    ):
        whole, whole_offsets = tokenize_documents(dataset.documents(split), tok)
        assert np.array_equal(np.asarray(ids), whole), split
        assert np.array_equal(offsets, whole_offsets), split
    assert len(chunked.train_offsets) - 1 == (1 if separator is None else 55)  # documents
    separators = 0 if separator is None else 60 * len(separator)  # not part of a document
    total = chunked.stats["train"].bytes + chunked.stats["val"].bytes
    assert total == prose.stat().st_size - separators


def test_every_document_ends_with_the_end_of_document_token(registry, prose):
    cfg = data_config(
        registry,
        {"name": "text", "paths": [str(prose)], "separator": "\n\n"},
        {"name": "bpe", "vocab_size": 300},
    )
    dataset = registry.build("dataset", cfg.dataset, DataContext(cfg.val_fraction, 0))
    tok = registry.build("tokenizer", cfg.tokenizer)
    splits = prepare_tokens(cfg, dataset, tok, registry, progress=False, chunk_chars=100)
    ends = splits.train_offsets[1:] - 1
    assert (np.asarray(splits.train)[ends] == tok.eos_id).all()
    assert (np.asarray(splits.train) == tok.eos_id).sum() == len(ends)


class Stories(Dataset):
    """``count`` short documents, generated one by one, counting how many were read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0

    def documents(self, split):
        for i in range(self.count):
            self.read += 1
            yield f"story {i}: " + "la " * (i % 50)


def test_a_token_budget_stops_at_a_document_boundary_and_reads_no_further(tmp_path, registry):
    tok = byte_tokenizer(registry)
    stories = Stories(10_000)
    with TokenWriter(tmp_path, "train", np.dtype(np.uint16)) as writer:
        stats = tokenize_split(stories.documents("train"), tok, writer, budget=5000, chunk_chars=64)
    offsets = np.fromfile(tmp_path / "train_offsets.bin", np.int64)
    ids = np.fromfile(tmp_path / "train.bin", np.uint16)
    assert stats.truncated and stats.tokens == len(ids) == offsets[-1]
    assert 5000 <= stats.tokens < 5000 + 200  # stopped at the first boundary past 5000
    assert offsets[-2] < 5000 and stats.documents == len(offsets) - 1
    assert stories.read < 200  # the documents after the budget were never generated


def test_memory_does_not_grow_with_the_corpus(tmp_path, registry):
    """Peak traced memory while tokenizing 4 MB is that of 1 MB: only a chunk is held."""
    tok = byte_tokenizer(registry)

    def peak(megabytes: int) -> int:
        documents = (PROSE * 40 for _ in range(megabytes * 1_000_000 // (len(PROSE) * 40)))
        tracemalloc.start()
        with TokenWriter(tmp_path, f"c{megabytes}", np.dtype(np.uint16)) as writer:
            stats = tokenize_split(documents, tok, writer, chunk_chars=64 << 10)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert stats.bytes > megabytes * 900_000
        return top

    small, large = peak(1), peak(4)
    assert large < 1.3 * small, (small, large)
    assert large < 4_000_000  # far below the 4 MB of text, let alone its ids


def test_progress_reports_documents_megabytes_rate_and_tokens(capsys):
    from tel_core.data.token_stream import SplitStats

    progress = TokenizeProgress("train")
    progress.done(SplitStats(documents=1200, tokens=3_456_789, bytes=12_500_000, seconds=2.5))
    line = capsys.readouterr().out.strip()
    assert line.startswith("tokenizing train: 1,200 documents")
    assert "12.5 MB" in line and "MB/s" in line and "3,456,789 tokens" in line
