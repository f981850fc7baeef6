"""sweep.json: what the sweep is and where each of its runs stands.

One process writes it (the ``tel sweep`` that holds the sweep's lock), atomically, at
every change; ``tel compare runs/<sweep>`` reads it for the order of the runs and for
the status of those still training. Statuses:

- ``pending``: not started; ``running``: training now (or the sweep was killed: a re-run
  resumes it); ``done``; ``stopped``: Ctrl-C or SIGTERM, with a checkpoint to resume;
- ``failed``: exited with an error (its one line is kept); retried by a re-run;
- ``diverged``: the loss became non-finite: a result, not retried.

Where a run stands is read from its run directory, not from sweep.json alone: a run
whose metrics reach max_steps is done whatever sweep.json says.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tel_core.analysis.runs import SWEEP_FILE, is_run_dir, load_run
from tel_core.errors import TelError
from tel_core.sweep.plan import SweepPlan, SweepRun

STATUSES = ("pending", "running", "done", "failed", "stopped", "diverged")
#: Exit codes of a run stopped by SIGINT or SIGTERM after saving its checkpoint.
STOPPED_CODES = (130, 143)


def where_it_stands(run: SweepRun) -> str:
    """From its run directory: done, diverged, resume (a checkpoint to continue from),
    overwrite (a run killed before its first checkpoint), or train (nothing there)."""
    if is_run_dir(run.run_dir):
        found = load_run(run.run_dir)
        if found.diverged:
            return "diverged"
        if found.finished and found.step >= run.max_steps:
            return "done"
    if (run.run_dir / "checkpoints" / "latest.pt").is_file():
        return "resume"
    if (run.run_dir / "metrics.jsonl").is_file():
        return "overwrite"
    return "train"


def error_line(log: Path) -> str:
    """The one line that says why a run failed: tel's error line, or the last line."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith("tel: error: "):
            return line[len("tel: error: ") :]
    return lines[-1] if lines else "exited without a word"


def outcome(
    run: SweepRun, exit_code: int | None, log: Path, stopping: bool = False
) -> tuple[str, str | None]:
    """A finished process's status, and its error line if it failed. ``stopping``: the
    sweep was asked to stop, and handed the signal on."""
    stands = where_it_stands(run)
    if stands in ("done", "diverged"):
        return stands, None
    if exit_code in STOPPED_CODES:
        return "stopped", None
    if exit_code is not None and exit_code < 0:  # killed by a signal before its loop began
        if stopping:
            return "stopped", None
        return "failed", f"killed by {signal.Signals(-exit_code).name}"
    if exit_code is None:  # a cluster job that ended without a result: cancelled, timed out
        if stands == "resume" or stopping:
            return "stopped", None
        return "failed", "the job ended without a result (cancelled, timed out or lost)"
    return "failed", error_line(log) if exit_code else "exited early without an error"


class SweepState:
    """sweep.json in memory; ``save`` writes it atomically."""

    def __init__(self, plan: SweepPlan, executor: str) -> None:
        self.path = plan.directory / SWEEP_FILE
        old: dict[str, Any] = {}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                old = {}
        previous = {e.get("key"): e for e in old.get("runs", []) if isinstance(e, dict)}
        self.data: dict[str, Any] = {
            "name": plan.name,
            "source": str(plan.source),
            "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "executor": executor,
            "members": list(plan.members),
            "seeds": list(plan.seeds) if plan.seeds else None,
            "grid": list(plan.grid_keys),
            "runs": [],
        }
        for run in plan.runs:
            entry = {
                "key": run.key,
                "member": run.member,
                "seed": run.seed,
                "run_dir": str(run.run_dir.relative_to(plan.directory)),
                "status": "pending",
                "command": run.shown(),
            }
            kept = previous.get(run.key, {})
            for field in ("status", "error", "job_id", "attempts", "wall_s"):
                if field in kept:
                    entry[field] = kept[field]
            self.data["runs"].append(entry)
        self.entries = {e["key"]: e for e in self.data["runs"]}

    def entry(self, run: SweepRun) -> dict[str, Any]:
        return self.entries[run.key]

    def set(self, run: SweepRun, status: str, **fields: Any) -> None:
        assert status in STATUSES, status
        entry = self.entry(run)
        entry["status"] = status
        if status != "failed":
            entry.pop("error", None)
        entry.update({k: v for k, v in fields.items() if v is not None})
        self.save()

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in self.data["runs"]:
            found[entry["status"]] = found.get(entry["status"], 0) + 1
        return found

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


@contextlib.contextmanager
def sweep_lock(directory: Path) -> Iterator[None]:
    """Only one ``tel sweep`` at a time trains a sweep's runs (where the OS allows a lock)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(directory / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise TelError(
                f"{directory}: another tel sweep ({holder}) is training this sweep; wait for it "
                f"or stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
