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
    assert tok.vocab_size == len(set("hellowörld ☃")) + 1
    ids = tok.encode("hello wörld ☃")
    assert tok.decode(ids) == "hello wörld ☃"
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_unseen_characters_map_to_unknown():
    tok = CharTokenizer(CharOptions())
    tok.fit(["abc"])
    assert tok.decode(tok.encode("abz")) == "ab" + UNKNOWN


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
