"""text: the dataset contract; files and globs, a contiguous split, downloads."""

import pytest

from tel_core.errors import TelError
from tel_core.interfaces import DataContext
from tel_core.testing import check_dataset
from tel_plugins.datasets.text import TextDataset, TextOptions

CTX = DataContext(val_fraction=0.25, seed=0)


def test_conforms(registry, tmp_path):
    (tmp_path / "a.txt").write_text("one line of text\n" * 50)
    (tmp_path / "b.txt").write_text("and another one\n" * 50)
    check_dataset("text", {"paths": [str(tmp_path / "*.txt")]}, registry=registry)


def test_contiguous_split(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefgh")
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "a.txt")]), CTX)
    assert list(ds.documents("train")) == ["abcdef"]
    assert list(ds.documents("val")) == ["gh"]


def test_globs_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("BBBB")
    (tmp_path / "a.txt").write_text("AAAA")
    ds = TextDataset(TextOptions(paths=[str(tmp_path / "*.txt")]), CTX)
    assert "".join(ds.documents("train")) + "".join(ds.documents("val")) == "AAAABBBB"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TelError, match="no file matches"):
        TextDataset(TextOptions(paths=[str(tmp_path / "none.txt")]), CTX)


def test_downloads_a_missing_file_from_its_url(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("downloaded text")
    target = tmp_path / "data" / "input.txt"
    ds = TextDataset(TextOptions(paths=[str(target)], url=source.as_uri()), CTX)
    assert target.read_text() == "downloaded text"
    assert "".join(ds.documents("train")).startswith("downloaded")


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


def test_a_separator_cuts_documents_and_keeps_each_whole_in_one_split(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo two\n\n\n\nthree\n\nfour")
    options = TextOptions(paths=[str(tmp_path / "a.txt")], separator="\n\n")
    ds = TextDataset(options, CTX)
    # 27 characters, cut at 20: "three" starts before the cut (at 16), "four" after.
    assert list(ds.documents("train")) == ["one", "two two", "three"]
    assert list(ds.documents("val")) == ["four"]
    assert ds.fingerprint() != TextDataset(TextOptions(paths=options.paths), CTX).fingerprint()
