"""Datasets through HF ``datasets``: a Hub id, or a packaged builder over local files.

``path`` is what ``datasets.load_dataset`` takes: a Hub id (``roneneldan/TinyStories``,
``wikimedia/wikipedia``) or a packaged builder (``json``, ``parquet``, ``text``, ``csv``)
with ``data_files``. Local files and Hub data take the same code path.

Local files are always read as a stream: tel's token cache is their cache, and
``datasets``' own Arrow cache is keyed on file modification times, not content. A Hub
dataset is downloaded whole into the Hub cache first, unless ``streaming = true``.

The fingerprint is the files' content for local files, and the dataset's own for the
Hub (its builder's hash and data files, which name the revision's commit), so the token
cache is reused exactly when the data is the same.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from tel_core.plugin import DataContext, Dataset, Split, TelError, files_digest, hookimpl
from tel_plugins.hub import first_line, quiet_hub

#: Rows read per batch from ``datasets``.
BATCH_ROWS = 1000


def _positive(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class HfOptions:
    #: A Hub dataset id ("roneneldan/TinyStories") or a packaged builder ("json",
    #: "parquet", "text", "csv") reading data_files.
    path: str | None = None
    #: The dataset's configuration (what load_dataset calls name), e.g. "20231101.en";
    #: "" is none.
    config: str | None = None
    #: Files (or globs) of the training split, for a packaged builder.
    data_files: list[str] | None = None
    #: Files (or globs) of the validation split, for a packaged builder.
    val_data_files: list[str] | None = None
    #: The split to train on.
    split: str = "train"
    #: A named split to validate on (e.g. "validation"); default: [data] val_fraction of
    #: the training split's documents, chosen by a hash of their index.
    val_split: str | None = None
    #: The column that holds each document's text.
    text_field: str = "text"
    #: Read a Hub dataset as a stream instead of downloading it whole first.
    streaming: bool = False
    #: Read at most this many documents of each split named above.
    max_documents: int | None = attrs.field(default=None, validator=_positive)
    #: A token budget: stop tokenizing the training split once it holds this many tokens
    #: (the validation split stops at val_fraction / (1 - val_fraction) of it).
    max_tokens: int | None = attrs.field(default=None, validator=_positive)
    #: The Hub revision (branch, tag or commit) to read.
    revision: str | None = None
    #: The text encoding of local json, text or csv files; default: UTF-8.
    encoding: str | None = None


def _in_val(index: int, fraction: float) -> bool:
    """Whether document ``index`` validates: a hash of the index (splitmix64), so the
    choice needs no count of the documents and streams."""
    z = (index + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) / 2**64 < fraction


class HfDataset(Dataset):
    """A Hugging Face dataset (Hub id, or json/parquet/text/csv files) through `datasets`."""

    def __init__(self, options: HfOptions, ctx: DataContext) -> None:
        if not options.path:
            raise TelError(
                'hf dataset: set path = "<hub id>" (e.g. "roneneldan/TinyStories"), or '
                'path = "json" (or parquet, text, csv) with data_files = [...], in [data.dataset]'
            )
        if options.val_data_files and not options.data_files:
            raise TelError("hf dataset: val_data_files needs data_files for the training split")
        # "" means unset, so that --set can undo a file's value (TOML has no null).
        self.options = attrs.evolve(
            options, config=options.config or None, revision=options.revision or None
        )
        self.val_fraction = ctx.val_fraction
        self.val_split = options.val_split or ("validation" if options.val_data_files else None)
        self._builder: Any = None

    # -- loading ------------------------------------------------------------------

    def _data_files(self) -> dict[str, list[str]] | None:
        o = self.options
        if not o.data_files:
            return None
        files = {o.split: list(o.data_files)}
        if o.val_data_files:
            files[self.val_split or "validation"] = list(o.val_data_files)
        return files

    def _fail(self, exc: BaseException) -> TelError:
        o = self.options
        if o.data_files:
            return TelError(f"hf dataset {o.path!r} with data_files: {first_line(exc)}")
        return TelError(
            f"hf dataset {o.path!r}: cannot load it ({first_line(exc)}); it needs the Hugging "
            f"Face Hub once (then HF_HUB_OFFLINE=1 reads the local copy), or read local files "
            f'with path = "json" (or parquet, text, csv) and data_files = [...]'
        )

    def builder(self) -> Any:
        """``datasets``' builder: resolves the configuration and the data files."""
        if self._builder is None:
            import datasets

            o = self.options
            with quiet_hub():
                try:
                    self._builder = datasets.load_dataset_builder(
                        o.path,
                        o.config,
                        data_files=self._data_files(),
                        revision=o.revision,
                        **self._builder_options(),
                    )
                except Exception as exc:  # offline, unknown id, missing files, bad config ...
                    raise self._fail(exc) from exc
        return self._builder

    def _builder_options(self) -> dict[str, Any]:
        # Only when set: a builder that has no such option (parquet) would refuse it.
        return {"encoding": self.options.encoding} if self.options.encoding else {}

    def _local_files(self) -> list[Path] | None:
        """The resolved data files when they are all local, else None."""
        files = self.builder().config.data_files or {}
        paths = [Path(str(f)) for split_files in files.values() for f in split_files]
        return paths if paths and all(p.is_file() for p in paths) else None

    def _rows(self, split: str) -> Iterator[str]:
        """The texts of one named split, in order, at most max_documents of them."""
        import datasets

        o = self.options
        streaming = o.streaming or self._local_files() is not None
        with quiet_hub():
            try:
                data = datasets.load_dataset(
                    o.path,
                    o.config,
                    data_files=self._data_files(),
                    split=split,
                    streaming=streaming,
                    revision=o.revision,
                    **self._builder_options(),
                )
            except Exception as exc:
                raise self._fail(exc) from exc
        columns = data.column_names
        if columns is not None and o.text_field not in columns:
            raise TelError(
                f"hf dataset {o.path!r}: split {split!r} has no column {o.text_field!r}; "
                f"set text_field to one of {', '.join(columns)}"
            )
        if columns is not None:
            data = data.select_columns([o.text_field])
        try:
            yield from self._texts(data, split)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from exc

    def _decode_error(self, exc: UnicodeDecodeError) -> TelError:
        """Which local file, byte and line is not text in the encoding, and what to set."""
        from tel_plugins.datasets.text import first_decode_error

        encoding = self.options.encoding or "utf-8"
        for path in self._local_files() or []:
            found = first_decode_error(path, encoding, f"hf dataset {self.options.path!r}")
            if found is not None:
                return found
        return TelError(
            f"hf dataset {self.options.path!r}: its text is not valid {exc.encoding} "
            f'({exc.reason}); set encoding = "..." in [data.dataset] to the files\' encoding'
        )

    def _texts(self, data: Any, split: str) -> Iterator[str]:
        o = self.options
        count = 0
        for batch in data.iter(batch_size=BATCH_ROWS):
            if o.text_field not in batch:
                raise TelError(
                    f"hf dataset {o.path!r}: split {split!r} has no column {o.text_field!r}; "
                    f"set text_field to one of {', '.join(batch)}"
                )
            for text in batch[o.text_field]:
                if o.max_documents is not None and count >= o.max_documents:
                    return
                count += 1
                if not isinstance(text, str):
                    raise TelError(
                        f"hf dataset {o.path!r}: column {o.text_field!r} holds "
                        f"{type(text).__name__}, not text; set text_field to a text column"
                    )
                yield text

    # -- the contract ---------------------------------------------------------------

    def documents(self, split: Split) -> Iterator[str]:
        if self.val_split is not None:
            source = self.options.split if split == "train" else self.val_split
            yield from (text for text in self._rows(source) if text)
            return
        want_val = split == "val"
        for index, text in enumerate(self._rows(self.options.split)):
            if text and _in_val(index, self.val_fraction) == want_val:
                yield text

    def token_budget(self, split: Split) -> int | None:
        budget = self.options.max_tokens
        if budget is None or split == "train":
            return budget
        return math.ceil(budget * self.val_fraction / (1.0 - self.val_fraction))

    def fingerprint(self) -> str:
        builder = self.builder()
        local = self._local_files()
        if local is not None:
            data = files_digest(local)
        else:  # the Hub: the builder's hash and data files name the revision's commit
            files = {k: [str(f) for f in v] for k, v in (builder.config.data_files or {}).items()}
            data = json.dumps([builder.hash, builder.config_id, files], sort_keys=True)
        key = f"{data}|{self.val_split}|{self.val_fraction}"
        return hashlib.sha256(key.encode()).hexdigest()


@hookimpl
def register_datasets(register):
    register("hf", HfDataset, options=HfOptions)
