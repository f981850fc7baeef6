"""text: the dataset contract; files and globs, a contiguous split, downloads; reading in
pieces, encoding errors that say where, and a fingerprint of the content."""

import itertools
import os

import pytest

import tel_plugins.datasets.text as text_module
from tel_core.errors import TelError
from tel_core.registry.interfaces import DataContext, document_text
from tel_core.testing import check_dataset
from tel_plugins.datasets.text import TextDataset, TextOptions

CTX = DataContext(val_fraction=0.25, seed=0)


def texts(ds, split):
    return [document_text(d) for d in ds.documents(split)]


def test_conforms(registry, tmp_path):
    (tmp_path / "a.txt").write_text("one line of text\n" * 50)
    (tmp_path / "b.txt").write_text("and another one\n" * 50)
    check_dataset("text", {"paths": [str(tmp_path / "*.txt")]}, registry=registry)


def test_contiguous_split(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefgh")
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "a.txt")]), CTX)
    assert texts(ds, "train") == ["abcdef"]
    assert texts(ds, "val") == ["gh"]


def test_the_split_is_by_bytes_and_a_straddling_character_goes_to_val(tmp_path):
    (tmp_path / "a.txt").write_text("abcdeé", encoding="utf-8")  # 7 bytes: cut at 5
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "a.txt")]), DataContext(0.2, 0))
    assert texts(ds, "train") == ["abcde"]
    assert texts(ds, "val") == ["é"]
    (tmp_path / "a.txt").write_text("abcdéf", encoding="utf-8")  # 7 bytes: é is bytes 4-5
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "a.txt")]), DataContext(0.2, 0))
    assert texts(ds, "train") == ["abcd"]
    assert texts(ds, "val") == ["éf"]


def test_globs_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("BBBB")
    (tmp_path / "a.txt").write_text("AAAA")
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "*.txt")]), CTX)
    assert "".join(texts(ds, "train")) + "".join(texts(ds, "val")) == "AAAABBBB"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TelError, match="no file matches"):
        TextDataset(TextOptions(paths=[str(tmp_path / "none.txt")]), CTX)


def test_downloads_a_missing_file_from_its_url(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("downloaded text")
    target = tmp_path / "data" / "input.txt"
    ds = TextDataset(TextOptions(paths=[str(target)], url=source.as_uri()), CTX)
    assert target.read_text() == "downloaded text"
    assert "".join(texts(ds, "train")).startswith("downloaded")


def test_failed_download_leaves_nothing_behind(tmp_path):
    target = tmp_path / "input.txt"
    with pytest.raises(TelError, match="could not download"):
        TextDataset(TextOptions(paths=[str(target)], url=(tmp_path / "gone").as_uri()), CTX)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_fingerprint_changes_with_the_content(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one")
    before = TextDataset(TextOptions(paths=[str(path)]), CTX).fingerprint()
    path.write_text("three")
    assert TextDataset(TextOptions(paths=[str(path)]), CTX).fingerprint() != before


def test_fingerprint_changes_when_a_file_is_edited_to_the_same_size_and_time(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("the cat sat")
    stat = path.stat()
    before = TextDataset(TextOptions(paths=[str(path)]), CTX).fingerprint()
    path.write_text("the dog sat")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as before
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert TextDataset(TextOptions(paths=[str(path)]), CTX).fingerprint() != before


def test_a_separator_cuts_documents_and_keeps_each_whole_in_one_split(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo two\n\n\n\nthree\n\nfour")
    options = TextOptions(paths=[str(tmp_path / "a.txt")], separator="\n\n")
    ds = TextDataset(options, CTX)
    # 27 characters, cut at 20: "three" starts before the cut (at 16), "four" after.
    assert list(ds.documents("train")) == ["one", "two two", "three"]
    assert list(ds.documents("val")) == ["four"]
    assert ds.fingerprint() != TextDataset(TextOptions(paths=options.paths), CTX).fingerprint()


@pytest.fixture
def small_pieces(monkeypatch):
    """Read 7 bytes at a time and cut parts of about 16 characters: every boundary case
    (a separator, a character or the split's cut across two reads) happens."""
    monkeypatch.setattr(text_module, "READ_BYTES", 7)
    monkeypatch.setattr(text_module, "PART_CHARS", 16)


def test_read_in_pieces_the_splits_are_the_same(tmp_path, small_pieces):
    body = "".join(f"línea {i}: naïve café\n\n" for i in range(40)) + "end"
    (tmp_path / "a.txt").write_text(body[:300], encoding="utf-8")
    (tmp_path / "b.txt").write_text(body[300:], encoding="utf-8")
    paths = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    data = body.encode("utf-8")
    cut = int(len(data) * 0.75)
    while data[cut] & 0xC0 == 0x80:  # a character that straddles the cut goes to val
        cut -= 1
    train, val = data[:cut].decode(), data[cut:].decode()
    ds = TextDataset(TextOptions(paths=paths), CTX)
    [train_doc] = ds.documents("train")
    parts = list(train_doc)
    assert len(parts) > 10 and "".join(parts) == train
    assert texts(ds, "val") == [val]
    # Parts end just before a whitespace that follows a non-space character.
    assert all(p[-1:].strip() and n[:1].isspace() for p, n in itertools.pairwise(parts))
    separated = TextDataset(TextOptions(paths=paths, separator="\n\n"), CTX)
    start, expected = 0, {"train": [], "val": []}
    for document in body.split("\n\n"):
        split = "train" if len(body[:start].encode()) < cut else "val"
        start += len(document) + 2
        if document:
            expected[split].append(document)
    assert list(separated.documents("train")) == expected["train"]
    assert list(separated.documents("val")) == expected["val"]


def test_a_file_in_another_encoding_says_which_file_where_and_which_option(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("first line\nsecond line\ncafé\n".encode("latin-1"))
    ds = TextDataset(TextOptions(paths=[str(path)]), CTX)
    with pytest.raises(TelError) as caught:
        texts(ds, "train")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert str(path) in message and "byte 26" in message and "line 3" in message
    assert "not valid utf-8" in message and "encoding" in message
    latin = TextDataset(TextOptions(paths=[str(path)], encoding="latin-1"), CTX)
    assert "café" in "".join(texts(latin, "train") + texts(latin, "val"))


def test_an_encoding_error_read_in_pieces_gives_the_offset_in_the_file(tmp_path, small_pieces):
    good = "ok\n" * 30  # 90 bytes, then a character begun across a read, then a bad byte
    (tmp_path / "a.txt").write_text("another file\n")
    path = tmp_path / "b.txt"
    path.write_bytes(good.encode() + "é".encode()[:1] + b"\xff rest")
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "a.txt"), str(path)]), CTX)
    with pytest.raises(TelError, match=r"b\.txt is not valid utf-8 text at byte 90, line 31"):
        texts(ds, "train")


def test_an_unknown_encoding_is_an_option_error(registry):
    from tel_core.config.loader import options_from_dict

    component = registry.get("dataset", "text")
    with pytest.raises(TelError, match="unknown text encoding 'utf-9'"):
        options_from_dict(component, {"paths": ["x"], "encoding": "utf-9"})
