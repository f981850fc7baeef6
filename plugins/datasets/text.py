"""Local UTF-8 text files (or globs), split contiguously: the start trains, the end validates."""

from __future__ import annotations

import glob
import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs

from tel_core import hookimpl
from tel_core.errors import TelError
from tel_core.interfaces import DataContext, Dataset, Split


@attrs.frozen
class TextOptions:
    #: Files or glob patterns, relative to the working directory; read in the order given.
    paths: list[str] = attrs.field(factory=list)
    #: Where to download the (single) file from when it is missing; http(s) or file URL.
    url: str | None = None
    #: The files' text encoding.
    encoding: str = "utf-8"
    #: Cut the text into documents at each occurrence of this string (e.g. "\n\n": one
    #: document a paragraph), as ``batching = "pad"`` wants; a document goes to the split
    #: where it starts. Default: each split is one document.
    separator: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.min_len(1))
    )


class TextDataset(Dataset):
    """Some files, concatenated: the first 1 - val_fraction trains, the rest validates.

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

    def _text(self) -> str:
        try:
            return "".join(p.read_text(encoding=self.encoding) for p in self.files)
        except UnicodeDecodeError as exc:
            raise TelError(f"text dataset: a file is not {self.encoding} text: {exc}") from None

    def documents(self, split: Split) -> Iterator[str]:
        text = self._text()
        cut = int(len(text) * (1.0 - self.val_fraction))
        if self.separator is None:
            yield text[:cut] if split == "train" else text[cut:]
            return
        start = 0
        for document in text.split(self.separator):
            in_train = start < cut
            start += len(document) + len(self.separator)
            if document and in_train == (split == "train"):
                yield document

    def fingerprint(self) -> str:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        key = f"{stats}|{self.encoding}|{self.val_fraction}|{self.separator!r}"
        return hashlib.sha256(key.encode()).hexdigest()


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
