"""Content fingerprints of files, and the stat memo that keeps taking them again cheap."""

from __future__ import annotations

import os

import pytest

import tel_core.data.fingerprint as fingerprint
from tel_core.data.fingerprint import DigestMemo, content_digest, files_digest


@pytest.fixture
def memo_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "file-digests.json"


@pytest.fixture
def trusted(monkeypatch):
    """Treat every file as old enough to be remembered (no waiting two seconds)."""
    monkeypatch.setattr(fingerprint, "RACY_NS", -(10**18))


def test_the_digest_is_of_the_content_and_the_order(tmp_path, memo_file):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("alpha")
    b.write_text("beta")
    assert files_digest([a, b]) == files_digest([a, b]) != files_digest([b, a])
    assert files_digest([a], ["x"]) != files_digest([a], ["y"])  # the name counts too
    before = files_digest([a, b])
    a.write_text("ALPHA")
    assert files_digest([a, b]) != before


def test_an_unchanged_file_is_not_read_again(tmp_path, memo_file, trusted):
    path = tmp_path / "a.txt"
    path.write_text("some text" * 1000)
    first = DigestMemo()
    digest = first.digest(path)
    first.save()
    assert digest == content_digest(path) and memo_file.is_file()
    again = DigestMemo()
    assert again.digest(path) == digest and again.hashed == 0


def test_an_edit_that_restores_size_and_mtime_is_still_seen(tmp_path, memo_file, trusted):
    path = tmp_path / "a.txt"
    path.write_text("the cat sat")
    stat = path.stat()
    memo = DigestMemo()
    before = memo.digest(path)
    memo.save()
    path.write_text("the dog sat")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ctime moves all the same
    again = DigestMemo()
    assert again.digest(path) != before and again.hashed == 1


def test_a_file_changed_just_before_hashing_is_not_remembered(tmp_path, memo_file):
    path = tmp_path / "a.txt"
    path.write_text("fresh")  # within one timestamp tick of being hashed: "racy"
    memo = DigestMemo()
    memo.digest(path)
    memo.save()
    again = DigestMemo()
    again.digest(path)
    assert again.hashed == 1


def test_a_damaged_memo_is_ignored(tmp_path, memo_file):
    memo_file.parent.mkdir(parents=True)
    memo_file.write_text("{not json")
    path = tmp_path / "a.txt"
    path.write_text("x")
    assert DigestMemo().digest(path) == content_digest(path)
