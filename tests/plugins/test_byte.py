"""byte: the tokenizer contract; any text round-trips in 256 ids."""

from tel_core.testing import check_tokenizer
from tel_plugins.tokenizers.byte import ByteOptions, ByteTokenizer


def test_conforms(registry):
    check_tokenizer("byte", registry=registry)


def test_any_text_round_trips_in_256_ids():
    tok = ByteTokenizer(ByteOptions())
    text = "ascii, ünïcödé, 漢字, emoji 🙂"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert max(ids) < tok.vocab_size == 256
    assert tok.decode(ids) == text


def test_a_cut_multibyte_character_decodes_without_failing():
    tok = ByteTokenizer(ByteOptions())
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"
