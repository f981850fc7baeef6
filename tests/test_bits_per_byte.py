"""Bits per byte counts the UTF-8 bytes behind the scored targets, whatever a token holds:
one byte (byte), one character of 1 to 4 bytes (char, unseen characters included) or
several characters (a tokenizer with multi-byte tokens)."""

from __future__ import annotations

import json
import random

import pytest

from tel_core import hookimpl
from tel_core.registry.interfaces import Tokenizer
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run

PAIRS = "abcdefgh"


class PairTokenizer(Tokenizer):
    """Two letters of ``PAIRS`` a token: every token stands for two bytes."""

    def __init__(self, options) -> None:
        pass

    @property
    def vocab_size(self) -> int:
        return len(PAIRS) ** 2

    def encode(self, text):
        pairs = zip(text[::2], text[1::2], strict=False)  # an odd last letter is dropped
        return [PAIRS.index(a) * len(PAIRS) + PAIRS.index(b) for a, b in pairs]

    def decode(self, ids):
        return "".join(PAIRS[i // len(PAIRS)] + PAIRS[i % len(PAIRS)] for i in ids)


class PairPlugin:
    @hookimpl
    def register_tokenizers(self, register):
        register("pairs", PairTokenizer)


def evaluation(tmp_path, registry, tiny, text: str, tokenizer: str) -> dict:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    tiny["data"]["dataset"]["paths"] = [str(corpus)]
    tiny["data"]["tokenizer"] = tokenizer
    tiny["train"].update(max_steps=1, eval_every=1)
    tiny["sample"]["max_new_tokens"] = 0
    run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    return next(r for r in map(json.loads, lines) if "val/loss" in r)


def letters(alphabet: str, n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


GREEK = "αβγδεζηθικλμνξοπρστυφχψω"  # two UTF-8 bytes each
CYRILLIC = "абвгдежзийклмнопрстуфхцчшщ"  # two bytes each, and never in the training split


@pytest.mark.parametrize(
    ("tokenizer", "text", "bytes_per_token"),
    [
        ("byte", letters(GREEK, 3000), 1),  # a byte a token, even inside a character
        ("char", letters("abcdefgh ", 3000), 1),
        ("char", letters(GREEK, 3000), 2),
        # The validation split (the last tenth) holds characters the vocabulary never saw:
        # each still counts its own two bytes, not the three of the replacement character.
        ("char", letters(GREEK, 2700) + letters(CYRILLIC, 300), 2),
        ("char", letters("xyz", 2700) + letters("€", 300), 3),
        ("pairs", letters(PAIRS, 6000), 2),
    ],
    ids=["byte", "char-ascii", "char-2-bytes", "char-unseen-2", "char-unseen-3", "pairs"],
)
def test_bits_per_byte_counts_the_bytes_behind_each_token(
    tmp_path, registry, tiny, tokenizer, text, bytes_per_token
):
    registry.add_plugin(PairPlugin(), name="pairs")
    val = evaluation(tmp_path, registry, tiny, text, tokenizer)
    assert val["val/bits_per_byte"] == pytest.approx(
        val["val/bits_per_token"] / bytes_per_token, rel=1e-9
    )
