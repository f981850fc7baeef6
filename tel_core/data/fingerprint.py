"""Fingerprints of files by their content, cheap to take again when nothing changed.

The token cache is reused exactly when the data is the same, so a dataset read from files
fingerprints their content, not their sizes or modification times: a file edited to the
same size, or with its modification time put back, must miss the cache.

Hashing a large corpus on every run would cost seconds, so each file's digest is kept in
a small memo (``$TEL_CACHE_DIR/file-digests.json``) beside the size, modification time,
status-change time and inode it was taken at. A file whose four values all match is not
read again. The status-change time (ctime) cannot be set back by a program, so an edit
that restores the modification time still shows. As in git's "racy" rule, a digest is
only remembered when the file had not changed in the two seconds before it was read: an
edit within one timestamp tick of the hash is caught on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: A file changed this recently (nanoseconds) when it was hashed is hashed again next time.
RACY_NS = 2_000_000_000
_BLOCK = 1 << 20


def memo_path() -> Path:
    # Imported here: tel_core.data.token_cache imports this module.
    from tel_core.data.token_cache import cache_root

    return cache_root() / "file-digests.json"


def content_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class DigestMemo:
    """Digests of files by absolute path, valid while a file's stat stamp is unchanged."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or memo_path()
        self.entries: dict[str, Any] = {}
        self.changed = False
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}  # no memo yet, or a damaged one: it is only a shortcut
        self.hashed = 0  # files read in full by this memo (what a benchmark counts)

    def digest(self, file: Path) -> str:
        key = str(file.resolve())
        stamp = _stamp(file.stat())
        entry = self.entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        started = time.time_ns()
        digest = content_digest(file)
        self.hashed += 1
        after = _stamp(file.stat())
        newest = max(after[1], after[2])
        if after == stamp and newest < started - RACY_NS:
            self.entries[key] = [stamp, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        """Write the memo atomically (a concurrent writer may win: it is only a shortcut)."""
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".digests-")
            with os.fdopen(fd, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
        except OSError:
            pass
        self.changed = False


def files_digest(files: Iterable[Path], names: Iterable[str] | None = None) -> str:
    """One digest of several files' content, in order, each under its name (default: its
    path as given), so that renaming or reordering files changes it too."""
    files = list(files)
    names = [str(f) for f in files] if names is None else list(names)
    memo = DigestMemo()
    parts = [(name, memo.digest(file)) for name, file in zip(names, files, strict=True)]
    memo.save()
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
