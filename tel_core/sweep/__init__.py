"""Sweeps: a family of experiments or a grid, over seeds, trained and resumed as one.

- ``plan``: a sweep file or folder -> members x seeds -> runs (``load_plan``);
- ``state``: sweep.json, where each run stands, one sweep at a time (a lock);
- ``local``: N ``tel run`` processes at a time on this machine;
- ``slurm``: a SLURM job array through submitit.

``run_sweep(plan)`` trains what is left of a plan: a run already done (or diverged) is
skipped, a stopped or killed one resumes from its checkpoint, and a failed one is tried
again; a failure never stops the others. The comparison that ends ``tel sweep`` is
``tel_core.analysis``'s, on the sweep's directory.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from tel_core import ui
from tel_core.errors import TelError
from tel_core.sweep.local import LocalExecutor, Task
from tel_core.sweep.plan import SweepPlan, SweepRun, load_plan, parse_seeds
from tel_core.sweep.slurm import SlurmExecutor, SlurmOptions
from tel_core.sweep.state import SweepState, outcome, sweep_lock, where_it_stands
from tel_core.train.stopping import Stopped

__all__ = [
    "SlurmOptions",
    "SweepPlan",
    "SweepResult",
    "SweepRun",
    "dry_run",
    "load_plan",
    "parse_seeds",
    "run_sweep",
]

#: What a run's state in its directory asks of ``tel run``.
ACTIONS = {"train": "train", "overwrite": "overwrite", "resume": "resume"}


@attrs.frozen
class SweepResult:
    counts: dict[str, int]  # status -> runs
    trained: int  # runs started this time
    wall_s: float

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


def _log(run: SweepRun) -> Path:
    """Where a run's ``tel run`` output goes: beside its files, kept across attempts."""
    return run.run_dir / "sweep.log"


def dry_run(plan: SweepPlan, say: Callable[[str], None] = ui.info) -> None:
    """List every run: where it stands and the command that would train it."""
    seeds = ",".join(map(str, plan.seeds)) if plan.seeds else "each member's own"
    say(
        f"{plan.name}: {len(plan.members)} member(s) x seeds {seeds} = {len(plan.runs)} runs "
        f"in {plan.directory}"
    )
    for run in plan.runs:
        stands = where_it_stands(run)
        if stands in ("done", "diverged"):
            say(f"  {run.key}: {stands}, skipped")
        else:
            say(f"  {run.key}: {stands}\n    {run.shown(ACTIONS[stands])}")


def run_sweep(
    plan: SweepPlan,
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    say: Callable[[str], None] = ui.info,
    stream: bool = True,
) -> SweepResult:
    """Train what is left of ``plan``. Raises ``Stopped`` if a signal stopped it (every
    running member saved its checkpoint); a re-run continues."""
    started_at = time.perf_counter()
    with sweep_lock(plan.directory):
        state = SweepState(plan, executor)
        if executor == "slurm":
            runner = SlurmExecutor(plan.directory / "slurm", slurm or SlurmOptions(), plan.name)
            _refuse_queued(state, runner)
        else:
            runner = LocalExecutor(jobs, stream=stream)
        tasks = []
        for run in plan.runs:
            stands = where_it_stands(run)
            if stands in ("done", "diverged"):
                state.set(run, stands)
            else:
                tasks.append(Task(run, run.argv(ACTIONS[stands]), _log(run)))
                state.set(run, "pending")
        skipped = len(plan.runs) - len(tasks)
        say(
            f"{plan.name}: {len(plan.runs)} runs ({len(plan.members)} member(s) x "
            f"{len(plan.runs) // max(1, len(plan.members))} seed(s)) in {plan.directory}; "
            f"{skipped} already finished; training {len(tasks)}: {runner.describe()}"
        )
        clocks: dict[str, float] = {}

        def started(task: Task) -> None:
            clocks[task.run.key] = time.perf_counter()
            entry = state.entry(task.run)
            job_id = getattr(runner, "job_ids", {}).get(task.run.key)
            resuming = "--resume" in task.argv
            state.set(task.run, "running", attempts=entry.get("attempts", 0) + 1, job_id=job_id)
            say(f"  {task.run.key}: {'resuming' if resuming else 'training'}")

        def finished(task: Task, code: int | None) -> None:
            status, error = outcome(task.run, code, task.log, runner.stopping)
            seconds = time.perf_counter() - clocks.get(task.run.key, time.perf_counter())
            state.set(task.run, status, error=error, wall_s=round(seconds, 1))
            detail = f": {error} (log: {task.log})" if error else ""
            say(f"  {task.run.key}: {status} after {seconds:.0f} s{detail}")

        signum = runner.execute(tasks, started, finished)
        counts = state.counts()
    result = SweepResult(counts, len(tasks), time.perf_counter() - started_at)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    say(f"{plan.name}: {summary} in {result.wall_s:.0f} s")
    if signum is not None:
        stopped = counts.get("stopped", 0)
        raise Stopped(
            f"sweep {plan.name} stopped by {signal.Signals(signum).name}: {stopped} run(s) "
            f"saved their checkpoints; run the same command again to continue",
            128 + signum,
        )
    return result


def _refuse_queued(state: SweepState, runner: SlurmExecutor) -> None:
    """Refuse to resubmit runs whose SLURM tasks from an earlier ``tel sweep`` still run."""
    running = {
        e["job_id"]: e["key"]
        for e in state.data["runs"]
        if e.get("status") == "running" and e.get("job_id")
    }
    alive = runner.still_queued(list(running))
    if alive:
        keys = ", ".join(running[j] for j in alive[:3]) + (" ..." if len(alive) > 3 else "")
        raise TelError(
            f"{len(alive)} run(s) of sweep {state.data['name']} are still SLURM jobs "
            f"({keys}; job {', '.join(alive[:3])}); wait for them, or scancel them, then run "
            f"tel sweep again to collect and resume"
        )
