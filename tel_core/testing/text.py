"""``check_tokenizer`` and ``check_dataset``: the text side of an experiment.

The core fits a tokenizer once on the training documents (handing it a one-shot
iterator), tokenizes both splits into a cached token file, and saves the tokenizer's
``state_dict`` as JSON in the run directory. These checks hold plugins to exactly that.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tel_core.errors import TelError
from tel_core.registry.interfaces import DataContext, Dataset, Optimum, OptimumContext, Tokenizer
from tel_core.registry.registry import Component, Registry
from tel_core.testing.subject import Subject, check_options, fail, subject

#: Texts every tokenizer must round-trip once fitted on them: ASCII, code, accents,
#: other scripts, emoji, a combining accent, whitespace, and nothing at all.
SAMPLE_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.\n",
    "def f(x):\n\treturn {'a': [1, 2, 3]}  # code, tabs & brackets\r\n",
    "café, naïve, Straße; Ελληνικά; русский; 漢字とかな; 🙂👍🏽; e\u0301",
    "  spaces  at both ends  ",
    "",
)


def check_tokenizer(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    texts: Sequence[str] = SAMPLE_TEXTS,
    documents: Iterable[str] | None = None,
) -> None:
    """Check a tokenizer against the ``register_tokenizers`` contract.

    Builds it with ``factory(options)``, fits it on ``documents`` (default: ``texts``)
    given as a one-shot iterator, as the core does, and checks: a
    ``tel_core.plugin.Tokenizer`` with a positive int ``vocab_size``; encode gives a
    list of ints or a 1-D integer array, every id in ``[0, vocab_size)``; ``decode(encode
    (text)) == text`` for each of ``texts`` (ASCII and non-ASCII by default);
    ``encode_batch`` gives what ``encode`` gives for each text; the empty text;
    ``count_bytes`` counts UTF-8 bytes, also of any piece of a text's ids; ``eos_id``
    is None or a valid id; the ``state_dict`` survives JSON and restores a fresh
    tokenizer; two tokenizers fitted alike agree.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("tokenizer", component, options, registry)
    check_options(s)
    corpus = list(texts if documents is None else documents)

    def fitted(one_shot: bool = True) -> Tokenizer:
        tokenizer = s.build_a(Tokenizer, "a Tokenizer")
        tokenizer.fit(iter(corpus) if one_shot else corpus)
        return tokenizer

    with s.check("builds and fits a tel_core.plugin.Tokenizer"):
        tokenizer = fitted()

    def one_shot_hint() -> str:
        """Why fitting went wrong, if fitting on a list instead of an iterator goes right."""
        if _round_trips(fitted(one_shot=False), texts):
            return (
                "; fitted on a list it works: fit() iterates its documents more than once, "
                "but the core hands it a one-shot iterator"
            )
        return ""

    with s.check("vocab_size"):
        size = tokenizer.vocab_size
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            fail(f"vocab_size is {size!r}; it must be a positive int{one_shot_hint()}")
    encoded = {}
    for text in texts:
        with s.check(f"encode({_short(text)})"):
            encoded[text] = _ids(tokenizer.encode(text), size)
    with s.check("round trip"):
        for text, ids in encoded.items():
            if (back := tokenizer.decode(ids)) != text:
                fail(f"decode(encode({text!r})) gave {back!r}{one_shot_hint()}")
    with s.check("encode_batch"):
        batch = tokenizer.encode_batch(list(texts))
        if len(batch) != len(texts):
            fail(f"encode_batch gave {len(batch)} results for {len(texts)} texts")
        for text, ids in zip(texts, batch, strict=True):
            if _ids(ids, size) != encoded[text]:
                fail(f"encode_batch encodes {text!r} differently from encode")
    with s.check("the empty text"):
        if len(_ids(tokenizer.encode(""), size)) or tokenizer.decode([]) != "":
            fail('encode("") must give no ids and decode([]) must give ""')
    with s.check("count_bytes"):
        for text, ids in encoded.items():
            if (count := tokenizer.count_bytes(ids)) != len(text.encode("utf-8")):
                fail(f"count_bytes gave {count} for {text!r}, not its UTF-8 length")
    with s.check("count_bytes of a window"):
        # Evaluation windows are cut anywhere in the token stream, also between the bytes
        # of one character: the bytes of the two pieces must add up to the whole's.
        for text, ids in encoded.items():
            total = tokenizer.count_bytes(ids)
            for k in range(1, len(ids)):
                head, tail = tokenizer.count_bytes(ids[:k]), tokenizer.count_bytes(ids[k:])
                if head + tail != total:
                    fail(
                        f"the first {k} ids of {_short(text)} count {head} bytes and the rest "
                        f"{tail}, not {total} together; count the bytes each id stands for "
                        f"(decoding part of a character gives a replacement character)"
                    )
    with s.check("eos_id"):
        eos = tokenizer.eos_id
        if eos is not None and not (isinstance(eos, int) and 0 <= eos < size):
            fail(f"eos_id is {eos!r}; it must be None or an id below vocab_size ({size})")
    with s.check("state_dict survives JSON"):
        _restores(s, tokenizer, encoded)
    with s.check("deterministic"):
        again = fitted()
        for text, ids in encoded.items():
            if _ids(again.encode(text), size) != ids:
                fail(f"two tokenizers fitted on the same documents encode {text!r} differently")


def _short(text: str) -> str:
    return repr(text if len(text) <= 20 else text[:17] + "...")


def _ids(ids: Any, vocab_size: int) -> list[int]:
    """``ids`` as a list, after checking it is a sequence of valid integer ids."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            fail(
                f"encode gave an array of shape {ids.shape} and dtype {ids.dtype}; "
                "expected a 1-D integer array"
            )
        values = ids.tolist()
    elif isinstance(ids, (list, tuple)):
        values = list(ids)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in values):
            fail(f"encode gave non-integer ids: {values[:5]!r}")
    else:
        fail(f"encode gave a {type(ids).__name__}; expected a list of ints or a numpy array")
    if values and not 0 <= min(values) <= max(values) < vocab_size:
        fail(f"ids run from {min(values)} to {max(values)}, outside [0, vocab_size={vocab_size})")
    return values


def _round_trips(tokenizer: Tokenizer, texts: Iterable[str]) -> bool:
    try:
        return all(tokenizer.decode(tokenizer.encode(t)) == t for t in texts)
    except Exception:
        return False


def _restores(s: Subject, tokenizer: Tokenizer, encoded: dict[str, list[int]]) -> None:
    state = tokenizer.state_dict()
    try:
        text = json.dumps(state)
    except (TypeError, ValueError) as exc:
        fail(f"state_dict() is not JSON-serialisable ({exc}); the run directory stores it so")
    fresh = s.build()
    fresh.load_state_dict(json.loads(text))
    if fresh.vocab_size != tokenizer.vocab_size:
        fail(f"restored, vocab_size is {fresh.vocab_size}, not {tokenizer.vocab_size}")
    for source, ids in encoded.items():
        if _ids(fresh.encode(source), tokenizer.vocab_size) != ids:
            fail(f"restored from its state_dict, it encodes {source!r} differently")


def check_dataset(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    ctx: DataContext | None = None,
    max_documents: int = 100,
) -> None:
    """Check a dataset against the ``register_datasets`` contract.

    Builds it with ``factory(options, ctx)`` (default ``DataContext(val_fraction=0.1,
    seed=0)``) and checks, on the first ``max_documents`` documents of each split (and
    the first ``MAX_PART_CHARS`` characters of a document given in parts): a
    ``tel_core.plugin.Dataset``; ``documents(split)`` yields documents (a str, or an
    iterable of str parts), with some text in both "train" and "val"; the same documents
    in the same order on every call and from a second instance; train and val are not
    the same documents; ``fingerprint()`` is None or a string that stays the same for
    the same data; ``token_budget`` is None or a positive int; ``optimum`` (with the
    byte tokenizer, rows of 256 tokens, padded) is None or a ``tel_core.registry.interfaces.
    Optimum`` with a finite, non-negative ``bits_per_token``, or a one-line ``TelError``
    (a task that needs other settings says so).

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("dataset", component, options, registry)
    check_options(s)
    ctx = ctx or DataContext(val_fraction=0.1, seed=0)

    def build() -> Dataset:
        return s.build_a(Dataset, "a Dataset", ctx)

    with s.check("builds a tel_core.plugin.Dataset"):
        dataset, twin = build(), build()
    splits = {}
    for split in ("train", "val"):
        with s.check(f"documents({split!r})"):
            splits[split] = docs = _take(dataset, split, max_documents)
            if not any(docs):
                fail(f"the {split!r} split holds no text; training needs text in both splits")
        with s.check(f"documents({split!r}) is deterministic"):
            if _take(dataset, split, max_documents) != docs:
                fail("a second call gave other documents (or none: return a new iterator)")
            if _take(twin, split, max_documents) != docs:
                fail("a second instance built alike gave other documents")
    with s.check("train and val differ"):
        if splits["train"] == splits["val"]:
            fail("both splits hold the same documents: does documents() ignore the split?")
    with s.check("token_budget"):
        for split in ("train", "val"):
            budget = dataset.token_budget(split)  # type: ignore[arg-type]
            if budget is not None and not (isinstance(budget, int) and budget > 0):
                fail(f"token_budget({split!r}) gave {budget!r}; it must be None or an int > 0")
    with s.check("optimum"):
        _check_optimum(dataset)
    with s.check("fingerprint"):
        first = dataset.fingerprint()
        if first is not None and not isinstance(first, str):
            fail(f"fingerprint() gave {first!r}; it must be None or a str")
        if dataset.fingerprint() != first or twin.fingerprint() != first:
            fail("fingerprint() changes for the same data, so the token cache would never hit")


#: How much of a document given in parts the dataset check reads.
MAX_PART_CHARS = 1 << 20


def _take(dataset: Dataset, split: str, limit: int) -> list[str]:
    docs = []
    for doc in itertools.islice(dataset.documents(split), limit):  # type: ignore[arg-type]
        if isinstance(doc, str):
            docs.append(doc)
            continue
        if not isinstance(doc, Iterable):
            fail(f"documents({split!r}) yielded a {type(doc).__name__}, not a str or parts")
        text = ""
        for part in doc:
            if not isinstance(part, str):
                fail(f"a document of {split!r} has a part that is a {type(part).__name__}")
            text += part
            if len(text) >= MAX_PART_CHARS:
                break
        docs.append(text[:MAX_PART_CHARS])
    return docs


class _Bytes(Tokenizer):
    """One token per UTF-8 byte: the tokenizer a synthetic task's optimum is asked with."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def _check_optimum(dataset: Dataset) -> None:
    try:
        optimum = dataset.optimum(OptimumContext(_Bytes(), block_size=256, batching="pad"))
    except TelError as exc:
        if len(str(exc).splitlines()) > 1:
            fail(f"optimum() refused with a TelError of several lines: {exc}")
        return
    if optimum is None:
        return
    if not isinstance(optimum, Optimum):
        fail(f"optimum() gave a {type(optimum).__name__}, not None or a tel_core.plugin.Optimum")
    bits = optimum.bits_per_token
    if bits is not None and not (isinstance(bits, float) and math.isfinite(bits) and bits >= 0):
        fail(f"optimum().bits_per_token is {bits!r}; it must be None or a finite float >= 0")
    if optimum.answers is not None and not callable(optimum.answers):
        fail("optimum().answers must be None or a callable (inputs, targets) -> bool mask")
