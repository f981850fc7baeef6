"""char: the tokenizer contract, the vocabulary from training text, unseen characters."""

import pytest

from tel_core.errors import TelError
from tel_core.testing import check_tokenizer
from tel_plugins.tokenizers.char import UNKNOWN, CharOptions, CharTokenizer


@pytest.mark.parametrize("options", [None, {"unknown": "error"}])
def test_conforms(registry, options):
    check_tokenizer("char", options, registry=registry)


def test_round_trip_and_vocabulary_from_training_text():
    tok = CharTokenizer(CharOptions())
    tok.fit(["hello", "wörld ☃"])
    assert tok.vocab_size == len(set("hellowörld ☃")) + 4  # and an unknown id per UTF-8 length
    ids = tok.encode("hello wörld ☃")
    assert tok.decode(ids) == "hello wörld ☃"
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_unseen_characters_map_to_unknown():
    tok = CharTokenizer(CharOptions())
    tok.fit(["abc"])
    assert tok.decode(tok.encode("abz")) == "ab" + UNKNOWN


@pytest.mark.parametrize("text", ["z", "é", "€", "😀", "ab€zé😀"])
def test_unseen_characters_count_their_own_utf8_bytes(text):
    tok = CharTokenizer(CharOptions())
    tok.fit(["abc"])
    ids = tok.encode(text)
    assert tok.count_bytes(ids) == len(text.encode("utf-8"))  # not 3 for each "\ufffd"
    assert sum(tok.count_bytes([i]) for i in ids) == tok.count_bytes(ids)
    assert all(i < tok.vocab_size for i in ids)


def test_fitting_on_no_text_says_so():
    with pytest.raises(TelError, match="the training split holds no text"):
        CharTokenizer(CharOptions()).fit(["", ""])


def test_state_dict_restores_the_vocabulary():
    tok = CharTokenizer(CharOptions())
    tok.fit(["the quick brown fox"])
    again = CharTokenizer(CharOptions())
    again.load_state_dict(tok.state_dict())
    assert list(again.encode("quick")) == list(tok.encode("quick"))


def test_unknown_error_keeps_the_vocabulary_exact_and_refuses_unseen_characters():
    tok = CharTokenizer(CharOptions(unknown="error"))
    tok.fit(["abc"])
    assert tok.vocab_size == 3
    with pytest.raises(TelError, match=r"'z' \(U\+007A\) never occurs in the training split"):
        tok.encode("abz")
