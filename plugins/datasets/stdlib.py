"""The embedded default corpus: the source of the running Python's standard library.

Every Python installation carries it, so tel trains out of the box with no download.
Files are read in sorted order, test suites are left out, and each file goes to train
or val by a hash of its path, so the split is the same on every machine with the same
Python version (recorded in the run's manifest). The fingerprint hashes the files'
content, so an edited file (even one of the same size) gives a fresh token cache.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import attrs

from tel_core.plugin import DataContext, Dataset, Split, TelError, files_digest, hookimpl

TEST_DIRS = {"test", "tests", "idle_test"}
NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


@attrs.frozen
class StdlibOptions:
    #: Where the library lives; default: the running interpreter's standard library.
    root: str | None = None


def _in_val(relative: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(relative.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


class StdlibDataset(Dataset):
    """Python standard-library source files, one document per file, tests excluded."""

    def __init__(self, options: StdlibOptions, ctx: DataContext) -> None:
        self.root = Path(options.root or sysconfig.get_paths()["stdlib"])
        if not self.root.is_dir():
            raise TelError(f"stdlib dataset: root {str(self.root)!r} is not a directory")
        self.val_fraction = ctx.val_fraction
        self.files = [
            path
            for path in sorted(self.root.rglob("*.py"))
            if not self._excluded(path.relative_to(self.root))
        ]
        if not self.files:
            raise TelError(f"stdlib dataset: no Python files under {self.root}")

    @staticmethod
    def _excluded(relative: Path) -> bool:
        parts = set(relative.parts[:-1])
        return bool(parts & (TEST_DIRS | NOT_STDLIB)) or relative.name.startswith("test_")

    def _split(self, path: Path) -> Split:
        relative = path.relative_to(self.root).as_posix()
        return "val" if _in_val(relative, self.val_fraction) else "train"

    def documents(self, split: Split) -> Iterator[str]:
        for path in self.files:
            if self._split(path) == split:
                yield path.read_text(encoding="utf-8", errors="replace")

    def fingerprint(self) -> str:
        # The files' content (not their sizes), remembered by stat between runs.
        names = [p.relative_to(self.root).as_posix() for p in self.files]
        content = files_digest(self.files, names)
        key = f"{sys.version}|{self.val_fraction}|{content}"
        return hashlib.sha256(key.encode()).hexdigest()


@hookimpl
def register_datasets(register):
    register("stdlib", StdlibDataset, options=StdlibOptions)
