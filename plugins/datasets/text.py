"""Local text files (or globs), split contiguously: the start trains, the end validates.

Files are read in pieces, never whole, so a corpus of any size streams through the token
cache in bounded memory. Without a separator each split is one document, handed out in
parts cut just before a whitespace that follows a non-space character: the byte-level
BPE pre-tokenizer (like ``byte`` and ``char``) always cuts there, so the parts tokenize
exactly as the whole text would.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs

from tel_core.plugin import DataContext, Dataset, Document, Split, TelError, files_digest, hookimpl

#: Bytes read (and decoded) at a time.
READ_BYTES = 1 << 20
#: Characters in a part of a split that is one document, give or take a word.
PART_CHARS = 256 << 10
#: Where a part may end: just before a whitespace that follows a non-space character.
_CUT = re.compile(r"(?<=\S)\s")


@attrs.frozen
class TextOptions:
    #: Files or glob patterns, relative to the working directory; read in the order given.
    paths: list[str] = attrs.field(factory=list)
    #: Where to download the (single) file from when it is missing; http(s) or file URL.
    url: str | None = None
    #: The files' text encoding (any Python codec: "utf-8", "latin-1", "utf-16", ...).
    encoding: str = attrs.field(default="utf-8")
    #: Cut the text into documents at each occurrence of this string (e.g. "\n\n": one
    #: document a paragraph), as ``batching = "pad"`` wants; a document goes to the split
    #: where it starts, and each must fit in memory. Default: each split is one document.
    separator: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.min_len(1))
    )

    @encoding.validator
    def _known_codec(self, attribute: attrs.Attribute, value: str) -> None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None


class TextDataset(Dataset):
    """Some files, concatenated: the first 1 - val_fraction of the bytes trains, the rest
    validates.

    With a separator, the text is cut into documents and each document goes whole to the
    split in which it starts.
    """

    def __init__(self, options: TextOptions, ctx: DataContext) -> None:
        if not options.paths:
            raise TelError('text dataset: set paths = ["file.txt", ...] in [data.dataset]')
        if options.url:
            if len(options.paths) != 1:
                raise TelError("text dataset: url needs exactly one entry in paths to download to")
            _download_if_missing(options.url, Path(options.paths[0]))
        self.files: list[Path] = []
        for pattern in options.paths:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise TelError(
                    f"text dataset: no file matches {pattern!r} (relative to {os.getcwd()})"
                )
            self.files += [Path(m) for m in matches if Path(m).is_file()]
        self.encoding = options.encoding
        self.separator = options.separator
        self.val_fraction = ctx.val_fraction

    # -- reading ------------------------------------------------------------------

    def _pieces(self) -> Iterator[tuple[str, bool]]:
        """The text of every file in order, decoded piece by piece, each piece flagged
        True while it lies before the cut between the splits (a character that straddles
        the cut goes to val)."""
        total = sum(p.stat().st_size for p in self.files)
        cut = int(total * (1.0 - self.val_fraction))
        start = 0  # bytes of the files before this one
        for path in self.files:
            reader = _Decoder(path, self.encoding)
            with open(path, "rb") as f:
                while block := f.read(READ_BYTES):
                    end = start + len(block)
                    if start < cut < end:  # the cut falls in this block
                        yield reader.decode(block[: cut - start]), True
                        yield reader.decode(block[cut - start :]), False
                    else:
                        yield reader.decode(block), end <= cut
                    start = end
            yield reader.finish(), start <= cut

    def documents(self, split: Split) -> Iterator[Document]:
        if self.separator is None:
            yield self._parts(split)
            return
        yield from self._separated(split)

    def _parts(self, split: Split) -> Iterator[str]:
        """One split's text in parts of about PART_CHARS, cut where tokenizers cut."""
        carry = ""
        for text, in_train in self._pieces():
            if in_train != (split == "train"):
                continue
            carry += text
            while len(carry) >= PART_CHARS:
                at = _cut_before(carry, PART_CHARS)
                yield carry[:at]
                carry = carry[at:]
        if carry:
            yield carry

    def _separated(self, split: Split) -> Iterator[str]:
        """Documents between separators, each to the split in which it starts."""
        want_train = split == "train"
        separator = self.separator
        assert separator is not None
        overlap = len(separator) - 1  # a separator may begin in the previous piece
        pending = ""  # the text of the document being read
        starts_in_train = True
        for text, in_train in self._pieces():
            if not pending:
                starts_in_train = in_train
            tail = pending[len(pending) - overlap :] if overlap and pending else ""
            pending += text
            if separator not in tail + text:  # the document goes on: nothing to split
                continue
            *complete, pending = pending.split(separator)
            for document in complete:
                if document and starts_in_train == want_train:
                    yield document
                starts_in_train = in_train  # the next document starts in this piece
        if pending and starts_in_train == want_train:
            yield pending

    def fingerprint(self) -> str:
        names = [str(p.resolve()) for p in self.files]
        content = files_digest(self.files, names)
        key = f"{content}|{self.encoding}|{self.val_fraction}|{self.separator!r}"
        return hashlib.sha256(key.encode()).hexdigest()


def _cut_before(text: str, near: int) -> int:
    """The last place at or before ``near`` where ``text`` may be cut; ``near`` if none."""
    window = near // 2
    at = None
    for match in _CUT.finditer(text, window, near + 1):
        at = match.start()
    return at if at else near


def first_decode_error(path: Path, encoding: str, who: str) -> TelError | None:
    """The one-line error for the first byte of ``path`` that is not ``encoding`` text."""
    reader = _Decoder(path, encoding, who)
    try:
        with open(path, "rb") as f:
            while block := f.read(READ_BYTES):
                reader.decode(block)
        reader.finish()
    except TelError as exc:
        return exc
    return None


class _Decoder:
    """An incremental decoder that says which file, byte and line broke it."""

    def __init__(self, path: Path, encoding: str, who: str = "text dataset") -> None:
        self.who = who
        self.path = path
        self.encoding = encoding
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self.fed = 0  # bytes handed to the decoder so far
        self.lines = 1  # line of the first byte not yet decoded
        self.last_block = 0
        # Lines are counted in bytes, which only works where "\n" is the byte 0x0A.
        try:
            self.counts_lines = "\nA".encode(encoding).endswith(b"\nA")
        except UnicodeError:
            self.counts_lines = False

    def decode(self, data: bytes, final: bool = False) -> str:
        self.last_block = len(data)
        try:
            text = self.decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise self._error(exc) from None
        self.lines += data.count(b"\n")
        self.fed += len(data)
        return text

    def finish(self) -> str:
        return self.decode(b"", final=True)

    def _error(self, exc: UnicodeDecodeError) -> TelError:
        # exc.object is what the decoder saw: the bytes of a character begun in the
        # previous block, then this block.
        pending = len(exc.object) - self.last_block
        offset = self.fed - pending + exc.start
        line = ""
        if self.counts_lines:
            newlines = exc.object[: exc.start].count(b"\n")
            line = f", line {self.lines + newlines}"
        return TelError(
            f"{self.who}: {self.path} is not valid {self.encoding} text at byte {offset}"
            f"{line} ({exc.reason}: {exc.object[exc.start : exc.end]!r}); set encoding = "
            f'"..." in [data.dataset] to the file\'s encoding (e.g. "latin-1", "cp1252")'
        )


def _download_if_missing(url: str, path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            out.write(response.read())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise TelError(f"text dataset: could not download {url} to {path}: {exc}") from None
    partial.replace(path)  # a half-written download never passes for the data


@hookimpl
def register_datasets(register):
    register("text", TextDataset, options=TextOptions)
