"""UTF-8 bytes as tokens: a fixed vocabulary of 256, nothing to learn, any text round-trips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from tel_core.plugin import Tokenizer, hookimpl


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

    def to_huggingface(self) -> Any:
        """GPT-2's byte-level scheme with no merges: id b is byte b."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        vocab = {char: byte for byte, char in byte_to_unicode().items()}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte (what byte-level tokenizers store)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = (b for b in range(256) if b not in printable)
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return table


@hookimpl
def register_tokenizers(register):
    register("byte", ByteTokenizer, options=ByteOptions)
