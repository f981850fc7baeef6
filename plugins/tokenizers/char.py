"""Characters as tokens, with the vocabulary read off the training text (nanoGPT's char level)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np

from tel_core import hookimpl
from tel_core.errors import TelError
from tel_core.interfaces import Tokenizer

UNKNOWN = "\ufffd"  # what a character never seen in training decodes to


@attrs.frozen
class CharOptions:
    #: What a character never seen in training becomes: one extra id ("token"), or an
    #: error ("error", which keeps the vocabulary exactly the training characters).
    unknown: Literal["token", "error"] = "token"


class CharTokenizer(Tokenizer):
    """One token per character seen in the training split (plus one for unseen ones)."""

    def __init__(self, options: CharOptions) -> None:
        self.options = options
        self._chars = ""

    def fit(self, documents: Iterable[str]) -> None:
        seen: set[str] = set()
        for doc in documents:
            seen.update(doc)
        self._set_chars("".join(sorted(seen)))

    def _set_chars(self, chars: str) -> None:
        self._chars = chars
        # Sorted code points let encode() map a whole text with one numpy searchsorted.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @property
    def vocab_size(self) -> int:
        # With unknown = "token", the last id stands for every unseen character.
        return len(self._chars) + (self.options.unknown == "token")

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
        return np.where(known, ids, len(self._chars)).astype(np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        table = self._chars + UNKNOWN
        return "".join(table[int(i)] for i in ids)

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
