"""The kit itself, text side: tokenizers and datasets, correct and flawed."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import pytest

from tel_core.registry.interfaces import DataContext, Dataset, Tokenizer
from tel_core.registry.registry import Component, Source
from tel_core.testing import ConformanceError, check_dataset, check_tokenizer


@attrs.frozen
class Flaw:
    #: Which part of the contract to break ("" for none).
    flaw: str = ""


def component(kind: str, factory) -> Component:
    source = Source(plugin="test", module=__name__)
    return Component(kind=kind, name="flawed", factory=factory, options=Flaw, source=source)


class Chars(Tokenizer):
    """One id per character seen in fit, in order of first sight."""

    def __init__(self, options: Flaw) -> None:
        self.flaw = options.flaw
        self.chars: list[str] = []

    def fit(self, documents: Iterable[str]) -> None:
        if self.flaw == "twice":  # counts the documents first, then reads them
            sum(1 for _ in documents)
        for doc in documents:
            for char in doc:
                if char not in self.chars and (char.isascii() or self.flaw != "ascii"):
                    self.chars.append(char)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Sequence[int]:
        ids = [self.chars.index(c) + (self.flaw == "offset") for c in text if c in self.chars]
        return np.array(ids, dtype=float) if self.flaw == "float_ids" else ids

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i) - (self.flaw == "offset")] for i in ids)

    def state_dict(self) -> dict[str, Any]:
        if self.flaw == "set_state":
            return {"chars": set(self.chars)}
        return {} if self.flaw == "no_state" else {"chars": self.chars}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.chars = list(state.get("chars", []))


class DecodedBytes(Tokenizer):
    """UTF-8 bytes as ids, counting bytes by decoding (the default ``count_bytes``)."""

    def __init__(self, options: Flaw) -> None:
        pass

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> Sequence[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_count_bytes_must_hold_for_a_window_cut_inside_a_character():
    with pytest.raises(ConformanceError) as excinfo:
        check_tokenizer(component("tokenizer", DecodedBytes))
    assert "tokenizer 'flawed': count_bytes of a window: the first " in str(excinfo.value)
    assert "count the bytes each id stands for" in str(excinfo.value)


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("ascii", "round trip: decode(encode('café, naïve"),
        ("twice", "fit() iterates its documents more than once"),
        ("offset", "outside [0, vocab_size=73)"),
        ("float_ids", "dtype float64; expected a 1-D integer array"),
        ("no_state", "state_dict survives JSON: restored, vocab_size is 0"),
        ("set_state", "state_dict() is not JSON-serialisable"),
    ],
)
def test_tokenizer_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_tokenizer(component("tokenizer", Chars), {"flaw": flaw})
    assert str(excinfo.value).startswith("tokenizer 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_tokenizer_passes():
    check_tokenizer(component("tokenizer", Chars))


def test_a_tokenizer_may_be_checked_on_its_own_texts():
    # A tokenizer for ASCII alone fails the default texts but may be held to others.
    check_tokenizer(component("tokenizer", Chars), {"flaw": "ascii"}, texts=["plain ascii"])


class Docs(Dataset):
    """Twenty short documents; one in ten goes to val."""

    def __init__(self, options: Flaw, ctx: DataContext) -> None:
        self.flaw = options.flaw
        self.docs = [f"document {i}: " + "words " * i for i in range(20)]
        self.once = iter(self.docs)

    def documents(self, split: str) -> Iterator[str]:
        if self.flaw == "one_shot":
            return self.once
        wanted = "train" if self.flaw == "ignore_split" else split
        docs = [d for i, d in enumerate(self.docs) if (i % 10 == 0) == (wanted == "val")]
        if self.flaw == "no_val" and split == "val":
            docs = []
        if self.flaw == "shuffle":
            random.shuffle(docs)
        return iter(docs)

    def fingerprint(self) -> str | None:
        return str(id(self)) if self.flaw == "fingerprint" else "docs-v1"


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("shuffle", "documents('train') is deterministic: a second call gave other documents"),
        ("one_shot", "a second call gave other documents (or none: return a new iterator)"),
        ("no_val", "documents('val'): the 'val' split holds no text"),
        ("ignore_split", "train and val differ: both splits hold the same documents"),
        ("fingerprint", "fingerprint: fingerprint() changes for the same data"),
    ],
)
def test_dataset_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_dataset(component("dataset", Docs), {"flaw": flaw})
    assert str(excinfo.value).startswith("dataset 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_dataset_passes():
    check_dataset(component("dataset", Docs))
