"""Training a sweep's runs on this machine: N ``tel run`` processes at a time.

Each run is its own process, so a run that fails (or crashes) costs the others nothing.
The CPU threads are divided between the N processes (``OMP_NUM_THREADS``); on a machine
with several GPUs each process gets one (``CUDA_VISIBLE_DEVICES``), in turn.

Signals: the processes run in sessions of their own, so a Ctrl-C at the terminal reaches
the sweep alone, which hands exactly one SIGINT (or the SIGTERM it got) to every running
process: each finishes its step, saves its checkpoint and exits, and no new one starts.
A second Ctrl-C is handed on too, which stops them at once (as it stops ``tel run``). A
process whose sweep dies without a word (SIGKILL) gets a SIGTERM from the kernel
(Linux), and so saves its checkpoint as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from tel_core.sweep.plan import SweepRun


@attrs.frozen
class Task:
    run: SweepRun
    argv: list[str]
    log: Path  # where the process's output goes (stdout too unless streamed)


def cpu_threads() -> int:
    """The threads this process may use: its CPU affinity, or OMP_NUM_THREADS if set."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process may hand out (by CUDA_VISIBLE_DEVICES, or all)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: SIGTERM this process when the sweep that started it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalExecutor:
    def __init__(self, jobs: int, stream: bool = False) -> None:
        self.jobs = max(1, jobs)
        #: jobs = 1: the process writes to our stdout (its progress bar); else to its log.
        self.stream = stream and self.jobs == 1
        self.threads = max(1, cpu_threads() // self.jobs)
        self.gpus = visible_gpus()
        self.stopping = False  # a signal asked the sweep to stop

    def describe(self) -> str:
        where = f", one of {len(self.gpus)} GPUs each" if len(self.gpus) > 1 else ""
        return f"{self.jobs} at a time, {self.threads} CPU thread(s) each{where}"

    def environment(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def execute(
        self,
        tasks: Sequence[Task],
        started: Callable[[Task], None],
        finished: Callable[[Task, int], None],
    ) -> int | None:
        """Run ``tasks``, ``jobs`` at a time; returns the signal that stopped the sweep
        (None when every task ran)."""
        pending = list(tasks)
        running: dict[subprocess.Popen, tuple[Task, int]] = {}  # process -> (task, slot)
        received: list[int] = []
        self.stopping = False

        def forward(signum: int, frame: Any) -> None:
            received.append(signum)
            self.stopping = True
            for process in list(running):
                if process.poll() is None:
                    process.send_signal(signum)

        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, forward)
        try:
            while running or (pending and not received):
                free = [s for s in range(self.jobs) if s not in {v[1] for v in running.values()}]
                while pending and free and not received:
                    task, slot = pending.pop(0), free.pop(0)
                    running[self._start(task, slot)] = (task, slot)
                    started(task)
                for process in [p for p in running if p.poll() is not None]:
                    task, _ = running.pop(process)
                    finished(task, process.returncode)
                time.sleep(0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return received[0] if received else None

    def _start(self, task: Task, slot: int) -> subprocess.Popen:
        task.log.parent.mkdir(parents=True, exist_ok=True)
        with open(task.log, "a", encoding="utf-8") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {task.run.shown()}\n")
            log.flush()
            return subprocess.Popen(
                task.argv,
                stdin=subprocess.DEVNULL,
                stdout=None if self.stream else log,
                stderr=log,
                env=self.environment(slot),
                start_new_session=True,  # Ctrl-C reaches the sweep, which hands it on once
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
