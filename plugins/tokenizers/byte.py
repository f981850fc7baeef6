"""UTF-8 bytes as tokens: a fixed vocabulary of 256, nothing to learn, any text round-trips."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from tel_core import hookimpl
from tel_core.interfaces import Tokenizer


@attrs.frozen
class ByteOptions:
    pass


class ByteTokenizer(Tokenizer):
    """One token per UTF-8 byte (vocabulary 256)."""

    def __init__(self, options: ByteOptions) -> None:
        self.options = options

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def count_bytes(self, ids: Sequence[int]) -> int:
        return len(ids)  # exact even where a window cuts a multi-byte character

    def decode(self, ids: Sequence[int]) -> str:
        # A sample may stop in the middle of a multi-byte character: show it, don't fail.
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


@hookimpl
def register_tokenizers(register):
    register("byte", ByteTokenizer, options=ByteOptions)
