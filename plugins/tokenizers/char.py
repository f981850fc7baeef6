"""Characters as tokens, with the vocabulary read off the training text (nanoGPT's char level)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np

from tel_core.plugin import TelError, Tokenizer, hookimpl

UNKNOWN = "\ufffd"  # what a character never seen in training decodes to
#: Code points below each bound take 1, 2, 3 UTF-8 bytes; the rest take 4.
_UTF8_BOUNDS = np.array([0x80, 0x800, 0x10000], dtype=np.uint32)


@attrs.frozen
class CharOptions:
    #: What a character never seen in training becomes: an extra id ("token"; four of
    #: them, one per UTF-8 length, so that bits per byte counts its real bytes), or an
    #: error ("error", which keeps the vocabulary exactly the training characters).
    unknown: Literal["token", "error"] = "token"


class CharTokenizer(Tokenizer):
    """One token per character seen in the training split (plus four for unseen ones)."""

    def __init__(self, options: CharOptions) -> None:
        self.options = options
        self._chars = ""

    def fit(self, documents: Iterable[str]) -> None:
        seen: set[str] = set()
        for doc in documents:
            seen.update(doc)
        if not seen:
            raise TelError(
                "char tokenizer: the training split holds no text to learn characters from"
            )
        self._set_chars("".join(sorted(seen)))

    def _set_chars(self, chars: str) -> None:
        self._chars = chars
        # Sorted code points let encode() map a whole text with one numpy searchsorted.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        # UTF-8 bytes behind each id (the unknown ids: 1, 2, 3, 4), for bits per byte.
        self._bytes = np.array([len(c.encode("utf-8")) for c in chars] + [1, 2, 3, 4])

    @property
    def vocab_size(self) -> int:
        # With unknown = "token", the last four ids stand for the unseen characters of
        # each UTF-8 length: a text's bytes can then be counted from its ids.
        return len(self._chars) + 4 * (self.options.unknown == "token")

    def encode(self, text: str) -> np.ndarray:
        if not self._chars:
            raise TelError("the char tokenizer has no vocabulary yet: fit it on training text")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes)
        known = (ids < len(self._codes)) & (
            self._codes[np.minimum(ids, len(self._codes) - 1)] == codes
        )
        if self.options.unknown == "error" and not known.all():
            char = chr(codes[~known][0])
            raise TelError(
                f"char tokenizer: {char!r} (U+{ord(char):04X}) never occurs in the training "
                f'split; set unknown = "token" in [data.tokenizer] to give unseen characters an id'
            )
        unknown = len(self._chars) + np.searchsorted(_UTF8_BOUNDS, codes, side="right")
        return np.where(known, ids, unknown).astype(np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        table = self._chars + 4 * UNKNOWN
        return "".join(table[int(i)] for i in ids)

    def count_bytes(self, ids: Sequence[int]) -> int:
        return int(self._bytes[np.asarray(ids, dtype=np.int64)].sum())

    def state_dict(self) -> dict[str, Any]:
        return {"chars": self._chars}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._set_chars(state["chars"])

    def to_huggingface(self) -> Any:
        """One token per character, unseen ones to the unknown id; no merges."""
        from tokenizers import Tokenizer, decoders, models

        vocab = {char: i for i, char in enumerate(self._chars)}
        unknown = None
        if self.options.unknown == "token":
            unknown = UNKNOWN if UNKNOWN not in vocab else "<unk>"
            vocab[unknown] = len(self._chars)
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unknown))
        tokenizer.decoder = decoders.Fuse()  # characters joined as they are, no spaces
        return tokenizer


@hookimpl
def register_tokenizers(register):
    register("char", CharTokenizer, options=CharOptions)
