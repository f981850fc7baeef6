"""Documents to token files, chunk by chunk: memory stays bounded whatever the corpus size.

Documents (and the parts of long ones, see ``tel_core.registry.interfaces.Document``) are gathered
into chunks of about ``CHUNK_CHARS`` characters; each chunk is encoded with one
``tokenizer.encode_batch`` call (HF tokenizers spreads it over every core) and its ids are
appended to a raw token file at once. Nothing but the chunk at hand is held in memory:
neither the corpus, nor its ids, nor a list of document lengths.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import attrs
import numpy as np
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tel_core import ui
from tel_core.registry.interfaces import Document, Tokenizer, parts

#: Characters of text encoded per ``encode_batch`` call: enough texts to keep every core
#: busy, few enough that the chunk's ids (and HF's per-token bookkeeping) stay small.
CHUNK_CHARS = 4 << 20


@attrs.define
class SplitStats:
    """What tokenizing one split gave: saved in the cache's ``meta.json``."""

    documents: int = 0
    tokens: int = 0  # end-of-document tokens included
    bytes: int = 0  # UTF-8 bytes of the text
    seconds: float = 0.0
    truncated: bool = False  # stopped at the dataset's token budget


def token_dtype(tokenizer: Tokenizer) -> np.dtype:
    # uint16 halves the file (and the memory) for every vocabulary up to 65536.
    return np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32)


class TokenWriter:
    """Appends ids to ``<name>.bin`` and document offsets to ``<name>_offsets.bin`` (int64,
    ``n_documents + 1`` numbers: where each document starts, then the total length)."""

    def __init__(self, directory: Path, name: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.tokens = 0
        self._ids = open(directory / f"{name}.bin", "wb")  # noqa: SIM115 - closed in close()
        self._offsets = open(directory / f"{name}_offsets.bin", "wb")  # noqa: SIM115
        self._offsets.write(np.zeros(1, dtype=np.int64).tobytes())

    def write(self, ids: list[np.ndarray], document_ends: list[int]) -> None:
        """Append ``ids`` (concatenated) and the token counts at which documents end."""
        if ids:
            block = np.concatenate(ids).astype(self.dtype, copy=False)
            self._ids.write(block.tobytes())
        if document_ends:
            self._offsets.write(np.asarray(document_ends, dtype=np.int64).tobytes())

    def close(self) -> None:
        self._ids.close()
        self._offsets.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def pieces(documents: Iterable[Document]) -> Iterator[tuple[str, bool]]:
    """Each part of each document, and whether it is the document's last."""
    for document in documents:
        previous = None
        for part in parts(document):
            if previous is not None:
                yield previous, False
            previous = part
        yield ("" if previous is None else previous), True


def texts(documents: Iterable[Document]) -> Iterator[str]:
    """Every part of every document, in order: what ``Tokenizer.fit`` receives."""
    for document in documents:
        yield from parts(document)


class TokenizeProgress:
    """A live line per split (documents, MB, MB/s, tokens) on a terminal; a summary
    line otherwise, and always once a split is done."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.live = enabled and ui.console.is_terminal
        self.started = time.perf_counter()
        self._bar = None
        if self.live:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=ui.console,
                transient=True,
            )
            self._task = self._bar.add_task(self._line(SplitStats()))
            self._bar.start()

    def _line(self, stats: SplitStats) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return (
            f"tokenizing {self.label}: {stats.documents:,} documents │ {stats.bytes / 1e6:,.1f} MB "
            f"│ {stats.bytes / 1e6 / seconds:,.2f} MB/s │ {stats.tokens:,} tokens"
        )

    def update(self, stats: SplitStats) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(stats))

    def done(self, stats: SplitStats) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self.enabled:
            budget = " (token budget reached)" if stats.truncated else ""
            ui.info(self._line(stats) + f" │ {stats.seconds:.1f} s{budget}")


def tokenize_split(
    documents: Iterable[Document],
    tokenizer: Tokenizer,
    writer: TokenWriter,
    budget: int | None = None,
    chunk_chars: int = CHUNK_CHARS,
    progress: TokenizeProgress | None = None,
) -> SplitStats:
    """Tokenize ``documents`` into ``writer`` in chunks; each document is followed by
    ``eos_id`` if the tokenizer has one. With a ``budget``, stop at the first document
    or part boundary at which the split holds at least that many tokens."""
    stats = SplitStats()
    started = time.perf_counter()
    eos = None if tokenizer.eos_id is None else np.array([tokenizer.eos_id], dtype=np.int64)
    chunk: list[str] = []
    last: list[bool] = []
    size = 0

    def flush() -> bool:
        """Encode and write the chunk; True once the budget is reached."""
        encoded = tokenizer.encode_batch(chunk) if chunk else []
        ids: list[np.ndarray] = []
        ends: list[int] = []
        position = writer.tokens  # tokens in the file once this chunk is written
        reached = False
        for text, part_ids, ends_document in zip(chunk, encoded, last, strict=True):
            part = np.asarray(part_ids, dtype=np.int64)
            ids.append(part)
            position += len(part)
            stats.bytes += len(text.encode("utf-8"))
            reached = budget is not None and position >= budget
            if ends_document or reached:
                if eos is not None:
                    ids.append(eos)
                    position += 1
                ends.append(position)
                stats.documents += 1
            if reached:
                stats.truncated = True
                break
        writer.write(ids, ends)
        writer.tokens = stats.tokens = position
        chunk.clear()
        last.clear()
        if progress is not None:
            progress.update(stats)
        return reached

    stream = pieces(documents)
    try:
        for text, ends_document in stream:
            chunk.append(text)
            last.append(ends_document)
            size += len(text)
            if size >= chunk_chars:
                size = 0
                if flush():
                    break
        else:
            flush()
    finally:
        stream.close()  # closes the dataset's generator (and its files) when we stop early
    stats.seconds = time.perf_counter() - started
    if progress is not None:
        progress.done(stats)
    return stats
