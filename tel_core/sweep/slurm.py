"""Training a sweep's runs on a SLURM cluster: one job array, through submitit.

Every run is one task of the array, running the same ``tel run`` command a local sweep
runs (``--dry-run`` shows them), so the run directories must live on storage every node
sees. The submitting ``tel sweep`` waits for the tasks and keeps sweep.json up to date;
re-running it after a timeout, a preemption or a Ctrl-C collects what finished and
resumes the rest from their checkpoints, exactly as locally.

SLURM sends SIGTERM before it kills a task (at the time limit, or on ``scancel``), and
submitit asks for SIGUSR2 shortly before the limit: a task hands either on to its
``tel run`` as one SIGTERM, which saves the run's checkpoint at the next step boundary.
submitit's local executor stands in for a cluster in the tests (``cluster="local"``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from tel_core.errors import TelError
from tel_core.sweep.local import Task

#: SLURM job states of a task that may still train (``sacct``'s names).
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED")


@attrs.frozen
class SlurmOptions:
    partition: str | None = None
    time_min: int = 60  # each run's time limit, in minutes
    gpus_per_member: int = 0
    cpus_per_member: int | None = None
    mem_gb: float | None = None
    array_parallelism: int = 16  # tasks of the array that run at once
    #: submitit's cluster: "slurm", or "local" (its local executor, for tests).
    cluster: str = "slurm"


class MemberJob:
    """What one task of the array runs: the run's ``tel run`` command, with the task's
    termination signals handed on to it as one SIGTERM. Picklable, for submitit."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.argv, self.log, self.env = argv, log, env

    def __call__(self) -> int:
        environment = {**os.environ, **self.env}
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            environment["OMP_NUM_THREADS"] = environment["MKL_NUM_THREADS"] = cpus
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n")
            log.flush()
            process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment
            )
            handed_on: list[int] = []

            def hand_on(signum: int, frame: Any) -> None:
                if not handed_on and process.poll() is None:
                    handed_on.append(signum)
                    process.send_signal(signal.SIGTERM)

            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
                signal.signal(sig, hand_on)
            while True:
                try:
                    return process.wait()
                except InterruptedError:  # pragma: no cover - wait() retries by itself
                    continue


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise TelError(
            "--executor slurm needs submitit: pip install 'tel[lab]' (or pip install submitit)"
        ) from None
    return submitit


class SlurmExecutor:
    def __init__(self, folder: Path, options: SlurmOptions, name: str) -> None:
        self.folder, self.options, self.name = folder, options, name
        self.submitit = _submitit()
        self.job_ids: dict[str, str] = {}  # run key -> job id
        self.stopping = False  # a signal asked the sweep to stop

    def still_queued(self, job_ids: Sequence[str]) -> list[str]:
        """Those of ``job_ids`` SLURM still holds (pending or running): a sweep whose
        ``tel sweep`` died leaves its array running, and must not train those runs twice."""
        if self.options.cluster != "slurm":
            return []  # submitit's local jobs die with the process that started them
        alive = []
        for job_id in job_ids:
            state = self.submitit.SlurmJob(self.folder, job_id).state
            if state.split()[0] in ACTIVE_STATES:
                alive.append(job_id)
        return alive

    def describe(self) -> str:
        o = self.options
        where = f"partition {o.partition}" if o.partition else "the default partition"
        return (
            f"a SLURM job array on {where} ({o.cluster}), {o.time_min} min and "
            f"{o.gpus_per_member} GPU(s) per run, {o.array_parallelism} at a time"
        )

    def _executor(self) -> Any:
        o = self.options
        executor = self.submitit.AutoExecutor(folder=self.folder, cluster=o.cluster)
        executor.update_parameters(
            name=self.name,
            timeout_min=o.time_min,
            gpus_per_node=o.gpus_per_member,
            cpus_per_task=o.cpus_per_member,
            mem_gb=o.mem_gb,
            slurm_partition=o.partition,
            slurm_array_parallelism=o.array_parallelism,
        )
        return executor

    def execute(
        self,
        tasks: Sequence[Task],
        started: Callable[[Task], None],
        finished: Callable[[Task, int | None], None],
    ) -> int | None:
        if not tasks:
            return None
        executor = self._executor()
        env = {"PYTHONUNBUFFERED": "1"}
        with executor.batch():
            jobs = [executor.submit(MemberJob(t.argv, t.log, env)) for t in tasks]
        waiting = dict(zip(jobs, tasks, strict=True))
        for job, task in waiting.items():
            self.job_ids[task.run.key] = str(job.job_id)
            started(task)
        received: list[int] = []
        self.stopping = False

        def stop(signum: int, frame: Any) -> None:
            self.stopping = True
            if not received:
                for job in waiting:
                    if not job.done():
                        job.cancel(check=False)  # SLURM: SIGTERM first, then a grace time
            received.append(signum)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while waiting:
                for job in [j for j in waiting if j.done()]:
                    task = waiting.pop(job)
                    try:
                        code = job.result()
                    except Exception:  # cancelled, timed out, node lost: see the run dir
                        code = None
                    finished(task, code)
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return received[0] if received else None
