"""What `tel data` reports: an experiment's tokenized data, and BPE vocabulary sizes.

``prepare`` tokenizes an experiment's data into the token cache ahead of training (the
very cache ``tel run`` then reads) and returns its statistics. ``analyze`` trains a
byte-level BPE per vocabulary size on a sample of the training split and measures it on
a sample of the validation split: bytes per token, tokens per document and the share of
the vocabulary in use, the numbers that choose a vocabulary size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from tel_core import ui
from tel_core.config.loader import options_from_dict
from tel_core.config.schema import Experiment, Selection
from tel_core.data.token_cache import prepare_tokens
from tel_core.registry.interfaces import DataContext, Document, parts
from tel_core.registry.registry import Registry, default_registry


@attrs.frozen
class SplitReport:
    split: str
    documents: int
    tokens: int
    bytes: int
    median_tokens: float  # tokens per document (end-of-document token included)
    p95_tokens: float

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(1, self.tokens)


@attrs.frozen
class PrepareReport:
    name: str
    dataset: str
    tokenizer: str
    vocab_size: int
    cache_dir: Path | None
    from_cache: bool
    seconds: float
    splits: list[SplitReport]


def _build(experiment: Experiment, registry: Registry) -> tuple[Any, Any]:
    data = experiment.data
    dataset = registry.build(
        "dataset", data.dataset, DataContext(data.val_fraction, experiment.seed)
    )
    return dataset, registry.build("tokenizer", data.tokenizer)


def prepare(experiment: Experiment, registry: Registry | None = None) -> PrepareReport:
    """Tokenize ``experiment``'s data into the token cache (or find it there)."""
    registry = registry or default_registry()
    dataset, tokenizer = _build(experiment, registry)
    started = time.perf_counter()
    splits = prepare_tokens(experiment.data, dataset, tokenizer, registry)
    seconds = time.perf_counter() - started
    reports = []
    for split in ("train", "val"):
        offsets = np.asarray(getattr(splits, f"{split}_offsets"))
        lengths = np.diff(offsets) if len(offsets) > 1 else np.zeros(1)
        stats = splits.stats.get(split)
        reports.append(
            SplitReport(
                split,
                documents=len(offsets) - 1,
                tokens=len(getattr(splits, split)),
                bytes=stats.bytes if stats else 0,
                median_tokens=float(np.median(lengths)),
                p95_tokens=float(np.percentile(lengths, 95)),
            )
        )
    return PrepareReport(
        experiment.name,
        experiment.data.dataset.name,
        experiment.data.tokenizer.name,
        tokenizer.vocab_size,
        splits.cache_dir,
        splits.from_cache,
        seconds,
        reports,
    )


def print_prepare(report: PrepareReport) -> None:
    where = report.cache_dir or "not cached (the dataset has no fingerprint)"
    how = "reused" if report.from_cache else f"written in {report.seconds:.1f} s"
    ui.info(
        f"{report.name}: dataset {report.dataset}, tokenizer {report.tokenizer} "
        f"(vocab {report.vocab_size:,}); token cache {where} ({how})"
    )
    rows = [
        [
            s.split,
            f"{s.documents:,}",
            f"{s.tokens:,}",
            f"{s.bytes / 1e6:,.1f}",
            f"{s.bytes_per_token:.2f}",
            f"{s.median_tokens:,.0f}",
            f"{s.p95_tokens:,.0f}",
        ]
        for s in report.splits
    ]
    header = ["split", "documents", "tokens", "MB", "bytes/token", "tokens/doc median", "p95"]
    print_table(header, rows)


# -- choosing a vocabulary size -------------------------------------------------------


@attrs.frozen
class VocabReport:
    vocab_size: int  # asked for
    learned: int  # what the sample supported (at most vocab_size)
    bytes_per_token: float
    median_tokens: float  # tokens per document of the evaluation sample
    p95_tokens: float
    used: float  # share of the vocabulary that occurs in the evaluation sample
    train_seconds: float


def sample(documents: Iterable[Document], max_bytes: int) -> list[str]:
    """The first documents (whole, or the parts that fit) holding about ``max_bytes``."""
    taken: list[str] = []
    size = 0
    for document in documents:
        pieces = []
        for part in parts(document):  # a long document in parts: the parts that fit
            pieces.append(part)
            size += len(part.encode("utf-8"))
            if size >= max_bytes:
                break
        taken.append("".join(pieces))
        if size >= max_bytes:
            break
    return taken


@attrs.frozen
class Analysis:
    train_bytes: int  # of the training sample the tokenizers learned from
    eval_bytes: int  # of the validation sample they were measured on
    eval_documents: int
    rows: list[VocabReport]


def analyze(
    experiment: Experiment,
    vocab_sizes: Sequence[int],
    sample_bytes: int = 8_000_000,
    eval_bytes: int = 2_000_000,
    registry: Registry | None = None,
) -> Analysis:
    """Train a BPE per vocabulary size on a training sample; measure it on a val sample."""
    registry = registry or default_registry()
    dataset, _ = _build(experiment, registry)
    training = sample(dataset.documents("train"), sample_bytes)
    evaluation = sample(dataset.documents("val"), eval_bytes) or training
    eval_bytes_total = sum(len(t.encode("utf-8")) for t in evaluation)
    component = registry.get("tokenizer", "bpe")
    reports = []
    for size in vocab_sizes:
        options = options_from_dict(component, {"vocab_size": size}, f"--vocab-sizes {size}")
        tokenizer = registry.build("tokenizer", Selection("bpe", options))
        started = time.perf_counter()
        tokenizer.fit(iter(training))
        seconds = time.perf_counter() - started
        encoded = tokenizer.encode_batch(evaluation)
        lengths = np.array([len(ids) for ids in encoded])
        ids = np.concatenate([np.asarray(i) for i in encoded]) if encoded else np.zeros(0)
        reports.append(
            VocabReport(
                size,
                tokenizer.vocab_size,
                eval_bytes_total / max(1, int(lengths.sum())),
                float(np.median(lengths)),
                float(np.percentile(lengths, 95)),
                len(np.unique(ids)) / tokenizer.vocab_size,
                seconds,
            )
        )
    train_bytes = sum(len(t.encode("utf-8")) for t in training)
    return Analysis(train_bytes, eval_bytes_total, len(evaluation), reports)


def print_analysis(analysis: Analysis) -> None:
    ui.info(
        f"byte-level BPE trained on {analysis.train_bytes / 1e6:,.1f} MB of the training "
        f"split, measured on {analysis.eval_documents:,} documents "
        f"({analysis.eval_bytes / 1e6:,.1f} MB) of the validation split:"
    )
    reports = analysis.rows
    header = [
        "vocab",
        "learned",
        "bytes/token",
        "tokens/doc median",
        "p95",
        "vocab used",
        "train s",
    ]
    rows = [
        [
            f"{r.vocab_size:,}",
            f"{r.learned:,}",
            f"{r.bytes_per_token:.2f}",
            f"{r.median_tokens:,.0f}",
            f"{r.p95_tokens:,.0f}",
            f"{100 * r.used:.1f} %",
            f"{r.train_seconds:.1f}",
        ]
        for r in reports
    ]
    print_table(header, rows)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain aligned table: the first column left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    ui.info(line(header))
    for row in rows:
        ui.info(line(row))
