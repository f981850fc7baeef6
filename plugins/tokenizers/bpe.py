"""Byte-level BPE through HF tokenizers: trained on the training split, or loaded.

Three sources, by option: trained on the experiment's training split with
``train_from_iterator`` (the default), read from a ``tokenizer.json`` file (``path``: any
HF tokenizers file, GPT-2's included), or fetched from the Hugging Face Hub by id
(``pretrained``). Whichever it is, ``state_dict`` holds the whole tokenizer (vocabulary,
merges, pre-tokenizer, decoder) as JSON, so a run directory alone rebuilds it offline.

Nothing is read or fetched until it is needed (``fit``, ``fingerprint``, or the first
encode), so building one to load a saved state never touches a file or the network.
Byte-level BPE round-trips any text exactly, and ``count_bytes`` adds up the bytes each
token stands for, so bits per byte stays honest with multi-byte tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from tel_core.plugin import TelError, Tokenizer, files_digest, hookimpl
from tel_plugins.hub import first_line, quiet_hub

#: The end-of-document token of GPT-2 and of the tokenizers this plugin trains.
ENDOFTEXT = "<|endoftext|>"


@attrs.frozen
class BpeOptions:
    #: The vocabulary to learn, special tokens included (when trained on the data).
    vocab_size: int = attrs.field(default=4096, validator=attrs.validators.ge(257))
    #: A pair of tokens must occur at least this often in the training text to be merged.
    min_frequency: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    #: Tokens that are never split or merged (when trained); text never turns into them.
    special_tokens: list[str] = attrs.field(factory=lambda: [ENDOFTEXT])
    #: The end-of-document token appended after every document (eos_id); "" for none.
    #: It must be one of special_tokens, or in the vocabulary of a loaded tokenizer.
    eos_token: str = ENDOFTEXT
    #: Train on at most this many bytes of the training split (its first documents);
    #: default: all of it.
    max_train_bytes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    #: Load this tokenizer file instead of training (any HF tokenizers tokenizer.json).
    path: str | None = None
    #: Load this tokenizer from the Hugging Face Hub by id (e.g. "gpt2") instead of
    #: training; it needs the network once (then the Hub's local cache serves it).
    pretrained: str | None = None
    #: The Hub revision (branch, tag or commit) of pretrained; default: the main branch.
    revision: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.path and self.pretrained:
            raise ValueError("set path or pretrained, not both (or neither, to train)")
        trained = not (self.path or self.pretrained)
        if trained and self.eos_token and self.eos_token not in self.special_tokens:
            raise ValueError(
                f"eos_token {self.eos_token!r} must be one of special_tokens "
                f'{self.special_tokens}, or "" for none'
            )
        if trained and self.vocab_size < 256 + len(self.special_tokens):
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must hold the 256 bytes and the "
                f"{len(self.special_tokens)} special tokens"
            )


class BpeTokenizer(Tokenizer):
    """Byte-level BPE (HF tokenizers): trained on the training split, or loaded."""

    def __init__(self, options: BpeOptions) -> None:
        self.options = options
        self._tokenizer: Any = None  # a tokenizers.Tokenizer, once trained or loaded
        self._file: Path | None = None  # the file it comes from, once located

    # -- where it comes from ------------------------------------------------------

    def _source_file(self) -> Path | None:
        """The tokenizer file of ``path`` or ``pretrained`` (downloaded), or None to train."""
        options = self.options
        if self._file is None and options.path:
            self._file = Path(options.path)
            if not self._file.is_file():
                raise TelError(f"bpe tokenizer: path {options.path!r} is not a file")
        if self._file is None and options.pretrained:
            self._file = _download(options.pretrained, options.revision)
        return self._file

    def _ready(self) -> Any:
        if self._tokenizer is None:
            file = self._source_file()
            if file is None:
                raise TelError("the bpe tokenizer is not trained yet: fit it on training text")
            self._set(_read_tokenizer(file))
        return self._tokenizer

    def _set(self, tokenizer: Any, eos: str | None = None) -> None:
        tokenizer.encode_special_tokens = True  # "<|endoftext|>" in a text is just text
        self._tokenizer = tokenizer
        eos = self.options.eos_token if eos is None else eos
        self.eos_id = tokenizer.token_to_id(eos) if eos else None
        if eos and self.eos_id is None:
            raise TelError(
                f'bpe tokenizer: eos_token {eos!r} is not in the vocabulary; set eos_token = "" '
                "for none, or name the tokenizer's own end-of-document token"
            )
        self._token_bytes = _token_bytes(tokenizer)

    def fingerprint(self) -> str | None:
        # A trained tokenizer is decided by the options, the training split and the
        # library that trains it; a loaded one by its file's content.
        file = self._source_file()
        if file is None:
            import tokenizers

            return f"trained with tokenizers {tokenizers.__version__}"
        return files_digest([file], [file.name])

    def fit(self, documents: Iterable[str]) -> None:
        if self._source_file() is not None:
            self._ready()
            return
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tokenizer = HfTokenizer(models.BPE())
        # add_prefix_space=False keeps the round trip exact: no space is invented.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.options.vocab_size,
            min_frequency=self.options.min_frequency,
            special_tokens=list(self.options.special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not
            show_progress=False,
        )
        tokenizer.train_from_iterator(_capped(documents, self.options.max_train_bytes), trainer)
        self._set(tokenizer)

    # -- the contract ----------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._ready().get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        encoding = self._ready().encode(text, add_special_tokens=False)
        return np.asarray(encoding.ids, dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        tokenizer = self._ready()
        # encode_batch_fast skips the character offsets nobody here reads; both run in
        # parallel in Rust, over every core.
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        return [
            np.asarray(e.ids, dtype=np.int64) for e in encode(list(texts), add_special_tokens=False)
        ]

    def decode(self, ids: Sequence[int]) -> str:
        return self._ready().decode([int(i) for i in ids], skip_special_tokens=False)

    def count_bytes(self, ids: Sequence[int]) -> int:
        table = self._token_bytes
        if table is None:  # not byte-level: count the decoded text
            return super().count_bytes(ids)
        return int(table[np.asarray(ids, dtype=np.int64)].sum())

    def state_dict(self) -> dict[str, Any]:
        return {
            "tokenizer": json.loads(self._ready().to_str()),
            "eos_token": self.options.eos_token,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from tokenizers import Tokenizer as HfTokenizer

        self._set(HfTokenizer.from_str(json.dumps(state["tokenizer"])), state.get("eos_token"))

    def to_huggingface(self) -> Any:
        """A copy of the HF tokenizer itself, for ``tel export --format hf``.

        The same ids for every text, with one exception that tokenizer.json cannot record:
        a literal ``<|endoftext|>`` (any special token) in a text is text to tel, while
        the exported file matches it as the special token, as GPT-2's own files do.
        """
        from tokenizers import Tokenizer as HfTokenizer

        return HfTokenizer.from_str(self._ready().to_str())


def _capped(documents: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    """The documents, stopping after the one that reaches ``max_bytes`` UTF-8 bytes."""
    seen = 0
    for document in documents:
        yield document
        seen += len(document.encode("utf-8"))
        if max_bytes is not None and seen >= max_bytes:
            return


def _read_tokenizer(file: Path) -> Any:
    from tokenizers import Tokenizer as HfTokenizer

    try:
        return HfTokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exceptions
        raise TelError(
            f"bpe tokenizer: {file} is not a tokenizers file: {first_line(exc)}"
        ) from exc


def _download(repo: str, revision: str | None) -> Path:
    """The Hub's tokenizer.json of ``repo``, from the local Hub cache or the network."""
    from huggingface_hub import hf_hub_download

    with quiet_hub():
        try:
            return Path(hf_hub_download(repo, "tokenizer.json", revision=revision))
        except Exception as exc:  # offline, unknown repo, no tokenizer.json, ...
            raise TelError(
                f"bpe tokenizer: cannot fetch {repo!r} from the Hugging Face Hub "
                f"({first_line(exc)}); it needs the network once; offline, download its "
                f'tokenizer.json and set path = "tokenizer.json" instead of pretrained'
            ) from exc


def _token_bytes(tokenizer: Any) -> np.ndarray | None:
    """The UTF-8 bytes behind each id of a byte-level tokenizer (None if not byte-level).

    A byte-level token's string holds one character per byte; special tokens stand for
    no text of the document (an end-of-document token adds no bytes).
    """
    decoder = json.loads(tokenizer.to_str()).get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        return None
    table = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for token, i in tokenizer.get_vocab(with_added_tokens=False).items():
        table[i] = len(token)
    for i, added in tokenizer.get_added_tokens_decoder().items():
        table[i] = 0 if added.special else len(added.content.encode("utf-8"))
    return table


@hookimpl
def register_tokenizers(register):
    register("bpe", BpeTokenizer, options=BpeOptions)
