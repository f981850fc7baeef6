"""Reading run directories: config.toml, manifest.json and metrics.jsonl, nothing else.

A run trained on another machine and copied here reads the same, and so does a run still
training: a last line cut short mid-write is skipped, a missing manifest is empty. A
sweep directory (one with ``sweep.json``) stands for its runs, in the sweep's order, each
knowing its member and the sweep's status for it; any other directory stands for the run
directories found under it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import attrs

from tel_core.errors import TelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: The file a sweep keeps next to its members' run directories (tel_core.sweep).
SWEEP_FILE = "sweep.json"


@attrs.frozen(eq=False)
class Run:
    """One run directory, as read from disk."""

    path: Path
    config: dict[str, Any]  # the resolved experiment (config.toml)
    manifest: dict[str, Any]  # {} until the run has written it
    records: tuple[dict[str, Any], ...]  # metrics.jsonl, one dict a line
    member: str | None = None  # the sweep member it belongs to, if any
    sweep_status: str | None = None  # what sweep.json says of it: running, stopped, ...

    @cached_property
    def flat_config(self) -> dict[str, Any]:
        """The config as dotted keys: ``{"model.positional.name": "rope", ...}``."""
        return flatten(self.config)

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.path.name))

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def max_steps(self) -> int | None:
        return self.config.get("train", {}).get("max_steps")

    @property
    def step(self) -> int:
        """The last step the run logged (0 before its first line)."""
        return max((r.get("step", 0) for r in self.records), default=0)

    @cached_property
    def diverged(self) -> bool:
        """Stopped by a non-finite loss, or evaluated to one."""
        for record in self.records:
            if record.get("train/diverged"):
                return True
            if "val/loss" in record and not finite(record["val/loss"]):
                return True
        return False

    @property
    def finished(self) -> bool:
        """Evaluated at its last step: the loop always evaluates at max_steps."""
        return self.max_steps is not None and any(
            r.get("step") == self.max_steps and "val/loss" in r for r in self.records
        )

    @property
    def status(self) -> str:
        """done, diverged, or where a run still training or stopped stands: running,
        stopped, failed (what its sweep says), partial (no sweep to say), empty."""
        if self.diverged:
            return "diverged"
        if self.finished:
            return "done"
        if self.sweep_status in ("running", "stopped", "failed"):
            return self.sweep_status
        return "partial" if self.records else "empty"

    def progress(self) -> str:
        """``"300/300"``: the step reached out of max_steps."""
        return f"{self.step}/{self.max_steps if self.max_steps is not None else '?'}"

    def values(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of every record holding ``key``; null (NaN, inf) reads as NaN."""
        return [
            (r["step"], math.nan if r[key] is None else float(r[key]))
            for r in self.records
            if key in r and isinstance(r[key], (int, float, type(None)))
        ]

    def last(self, key: str) -> float | None:
        found = self.values(key)
        return found[-1][1] if found else None

    @property
    def validation(self) -> dict[str, Any]:
        """What the run was scored on. Runs trained before tel recorded it (no
        ``validation`` in the manifest) used batch_size x eval_batches windows."""
        if "validation" in self.manifest:
            return self.manifest["validation"]
        train, data = self.config.get("train", {}), self.config.get("data", {})
        return {
            "rows": train.get("batch_size", 16) * train.get("eval_batches", 20),
            "batching": data.get("batching", "windows"),
            "block_size": data.get("block_size"),
            "recorded": False,
        }

    def same_validation(self, other: Run) -> bool:
        """Whether both runs were scored on the same validation text: the same data,
        tokenizer and rows, and the same digest of the rows where both recorded one."""
        if self.validation_description() != other.validation_description():
            return False
        mine, theirs = self.validation.get("digest"), other.validation.get("digest")
        return mine is None or theirs is None or mine == theirs

    def validation_description(self) -> tuple[Any, ...]:
        data = self.config.get("data", {})
        described = self.validation
        return (
            json.dumps(data.get("dataset"), sort_keys=True),
            json.dumps(data.get("tokenizer"), sort_keys=True),
            data.get("val_fraction"),
            described.get("rows"),
            described.get("batching"),
            described.get("block_size"),
        )


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys; arrays of tables (``loggers``) keyed by index."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        flat = {}
        for i, value in enumerate(data):
            flat.update(flatten(value, f"{prefix}.{i}"))
        return flat
    return {prefix: data}


def is_run_dir(path: Path) -> bool:
    return (path / "config.toml").is_file() and (
        (path / "metrics.jsonl").is_file() or (path / "manifest.json").is_file()
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records; a line being written (or cut by a crash) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def load_run(path: Path, member: str | None = None, sweep_status: str | None = None) -> Run:
    """Read one run directory."""
    path = Path(path)
    if not is_run_dir(path):
        raise TelError(f"{path}: not a run directory (it needs config.toml and metrics.jsonl)")
    try:
        config = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TelError(f"{path / 'config.toml'}: unreadable: {exc}") from None
    manifest: dict[str, Any] = {}
    if (path / "manifest.json").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TelError(f"{path / 'manifest.json'}: unreadable: {exc}") from None
    records = tuple(read_records(path / "metrics.jsonl"))
    return Run(path, config, manifest, records, member, sweep_status)


def _sweep_runs(directory: Path) -> list[Run]:
    try:
        sweep = json.loads((directory / SWEEP_FILE).read_text(encoding="utf-8"))
        entries = sweep["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TelError(f"{directory / SWEEP_FILE}: unreadable: {exc}") from None
    runs = []
    for entry in entries:
        path = directory / entry["run_dir"]
        if is_run_dir(path):  # a pending member has nothing to read yet
            runs.append(load_run(path, entry.get("member"), entry.get("status")))
    return runs


def _runs_under(path: Path) -> list[Run]:
    if is_run_dir(path):
        return [load_run(path)]
    if (path / SWEEP_FILE).is_file():
        return _sweep_runs(path)
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if child.name != "checkpoints":
            found += _runs_under(child)
    return found


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """The runs that ``paths`` name: run directories, sweep directories (their runs in
    the sweep's order) or folders holding either (sorted by path); each run once."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise TelError(f"{path}: no such run or sweep directory")
        if not path.is_dir():
            raise TelError(f"{path}: not a run directory")
        found = _runs_under(path)
        if not found and not (path / SWEEP_FILE).is_file():
            raise TelError(
                f"{path}: holds no run directory (one with config.toml and metrics.jsonl)"
            )
        for run in found:
            key = run.path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs
