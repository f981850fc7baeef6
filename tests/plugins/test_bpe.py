"""bpe: the tokenizer contract; trained, loaded from a file or from the Hub; exact round
trip and byte counts with multi-byte tokens; a state that rebuilds it offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tel_core.config.loader import options_from_dict
from tel_core.errors import TelError
from tel_core.testing import SAMPLE_TEXTS, check_tokenizer
from tel_plugins.tokenizers.bpe import BpeOptions, BpeTokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog. " * 20,
    "café naïve Straße — déjà vu, 漢字とかな, 🙂👍🏽 " * 20,
    "def f(x):\n    return x * 2  # <|endoftext|> is text here\n" * 20,
]


def trained(**options) -> BpeTokenizer:
    tokenizer = BpeTokenizer(BpeOptions(**{"vocab_size": 400, "min_frequency": 1, **options}))
    tokenizer.fit(iter(CORPUS))
    return tokenizer


def save_hf_tokenizer(path: Path, vocab_size: int = 320) -> Path:
    """A GPT-2-shaped tokenizer.json (byte-level BPE, <|endoftext|>), as HF writes it."""
    tokenizer = trained(vocab_size=vocab_size)
    tokenizer._tokenizer.save(str(path))
    return path


@pytest.mark.parametrize(
    "options",
    [
        {"vocab_size": 300},
        {"vocab_size": 512, "min_frequency": 1},
        {"vocab_size": 300, "eos_token": "", "special_tokens": []},
        {"vocab_size": 300, "special_tokens": ["<pad>", "<|endoftext|>"]},
    ],
)
def test_conforms(registry, options):
    check_tokenizer("bpe", options, registry=registry, documents=list(SAMPLE_TEXTS) + CORPUS)


def test_conforms_loaded_from_a_file(registry, tmp_path):
    path = save_hf_tokenizer(tmp_path / "tokenizer.json")
    check_tokenizer("bpe", {"path": str(path)}, registry=registry)


def test_round_trip_is_exact_and_the_end_of_text_marker_in_a_text_is_text():
    tokenizer = trained()
    for text in [*SAMPLE_TEXTS, *CORPUS, "<|endoftext|>", "a\r\n\tb  \u00a0c\u200b"]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert tokenizer.eos_id not in ids.tolist()
    assert tokenizer.decode([tokenizer.eos_id]) == "<|endoftext|>"


def test_count_bytes_is_exact_with_multi_byte_tokens_and_any_cut():
    tokenizer = trained()
    text = CORPUS[1]
    ids = tokenizer.encode(text)
    lengths = [tokenizer.count_bytes([i]) for i in ids]
    assert max(lengths) >= 3  # some tokens stand for several bytes
    assert sum(lengths) == len(text.encode("utf-8"))
    # A window may cut anywhere, even inside a character: the bytes still add up.
    for k in range(len(ids)):
        assert tokenizer.count_bytes(ids[:k]) + tokenizer.count_bytes(ids[k:]) == sum(lengths)
    assert tokenizer.count_bytes([tokenizer.eos_id]) == 0  # the end of a document is no text


def test_encode_batch_is_encode_of_each_text():
    tokenizer = trained()
    batch = tokenizer.encode_batch([*CORPUS, ""])
    assert [b.tolist() for b in batch] == [tokenizer.encode(t).tolist() for t in [*CORPUS, ""]]


def test_it_learns_the_vocabulary_size_asked_for():
    rng = np.random.default_rng(0)
    words = [
        "".join(rng.choice(list("etaoinshrdlu"), size=rng.integers(2, 9))) for _ in range(3000)
    ]
    tokenizer = BpeTokenizer(BpeOptions(vocab_size=400))
    tokenizer.fit(iter([" ".join(words[i : i + 100]) for i in range(0, 3000, 100)]))
    assert tokenizer.vocab_size == 400
    small = BpeTokenizer(BpeOptions(vocab_size=4096))
    small.fit(iter(["tiny text"]))  # too little text for 4096: it stops at what it found
    assert 257 <= small.vocab_size < 4096


def test_max_train_bytes_reads_only_the_first_documents():
    read = []

    def documents():
        for i in range(1000):
            read.append(i)
            yield f"document {i} " * 10

    tokenizer = BpeTokenizer(BpeOptions(vocab_size=300, max_train_bytes=1000))
    tokenizer.fit(documents())
    assert len(read) < 20


def test_the_state_alone_rebuilds_it_offline(tmp_path):
    tokenizer = trained()
    state = json.loads(json.dumps(tokenizer.state_dict()))
    # Options that would need the network or a file: never touched when loading a state.
    fresh = BpeTokenizer(BpeOptions(pretrained="tel-tests/never-fetched"))
    fresh.load_state_dict(state)
    for text in CORPUS:
        assert fresh.encode(text).tolist() == tokenizer.encode(text).tolist()
    assert fresh.eos_id == tokenizer.eos_id and fresh.vocab_size == tokenizer.vocab_size


def test_a_file_is_loaded_as_is_and_fingerprinted_by_its_content(tmp_path):
    path = save_hf_tokenizer(tmp_path / "tokenizer.json", vocab_size=320)
    tokenizer = BpeTokenizer(BpeOptions(path=str(path)))
    tokenizer.fit(iter(["not trained on"]))
    assert tokenizer.vocab_size == 320 and tokenizer.eos_id is not None
    before = tokenizer.fingerprint()
    assert BpeTokenizer(BpeOptions(path=str(path))).fingerprint() == before
    save_hf_tokenizer(path, vocab_size=330)
    assert BpeTokenizer(BpeOptions(path=str(path))).fingerprint() != before


def test_a_file_without_the_end_of_document_token_says_what_to_set(tmp_path):
    path = tmp_path / "tokenizer.json"
    plain = trained(eos_token="", special_tokens=[])
    plain._tokenizer.save(str(path))
    with pytest.raises(TelError, match='not in the vocabulary; set eos_token = ""'):
        BpeTokenizer(BpeOptions(path=str(path))).fit(iter([]))
    assert BpeTokenizer(BpeOptions(path=str(path), eos_token="")).vocab_size > 256


def test_a_file_that_is_not_a_tokenizer_is_one_line(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"not": "a tokenizer"}')
    with pytest.raises(TelError, match="is not a tokenizers file") as caught:
        BpeTokenizer(BpeOptions(path=str(path))).fit(iter([]))
    assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(TelError, match="is not a file"):
        BpeTokenizer(BpeOptions(path=str(tmp_path / "missing.json"))).fit(iter([]))


def test_offline_the_hub_is_one_line_suggesting_path(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tokenizer = BpeTokenizer(BpeOptions(pretrained="tel-tests/no-such-tokenizer"))
    with pytest.raises(TelError) as caught:
        tokenizer.fingerprint()
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "cannot fetch 'tel-tests/no-such-tokenizer' from the Hugging Face Hub" in message
    assert 'set path = "tokenizer.json"' in message


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"path": "a.json", "pretrained": "gpt2"}, "set path or pretrained, not both"),
        ({"eos_token": "<eos>"}, "eos_token '<eos>' must be one of special_tokens"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"max_train_bytes": 0}, "max_train_bytes"),
    ],
)
def test_impossible_options_are_one_line_errors(registry, options, error):
    component = registry.get("tokenizer", "bpe")
    with pytest.raises(TelError, match=error):
        options_from_dict(component, options)


def test_ids_fit_the_token_files_dtype():
    tokenizer = trained(vocab_size=300)
    ids = tokenizer.encode_batch(CORPUS)
    assert all(isinstance(i, np.ndarray) and i.dtype.kind == "i" for i in ids)
    assert max(int(i.max()) for i in ids) < tokenizer.vocab_size


def test_its_hugging_face_form_gives_the_same_ids():
    tokenizer = trained()
    exported = tokenizer.to_huggingface()
    for text in [*SAMPLE_TEXTS, *CORPUS[:2], "a\r\n\tb  \u00a0c\u200b"]:
        ids = exported.encode(text, add_special_tokens=False).ids
        assert ids == tokenizer.encode(text).tolist()
    assert exported.token_to_id("<|endoftext|>") == tokenizer.eos_id
