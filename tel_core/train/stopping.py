"""Stopping well: Ctrl-C and SIGTERM end a run at a step boundary, with a checkpoint.

The first SIGINT (Ctrl-C) or SIGTERM (what schedulers and ``kill`` send) only records a
request; the loop finishes its current step, saves ``latest.pt`` and raises ``Stopped``,
whose exit code is the shell's 128 + signal number (130, 143). Stopping mid-step instead
would leave half-accumulated gradients and a data position one batch ahead of the
weights, and resuming would not be exact. A second Ctrl-C stops at once, without a
checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from tel_core.errors import TelError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(TelError):
    """The run was stopped by a signal after saving a checkpoint."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def by_signal(cls, signum: int, step: int, checkpoint: str) -> Stopped:
        """Exit code 128 + the signal's number, as a shell reports a process it killed."""
        name = signal.Signals(signum).name
        return cls(
            f"stopped by {name} after step {step}; saved {checkpoint} (continue with --resume)",
            128 + signum,
        )


class StopSignals:
    """A context in which SIGINT and SIGTERM request a stop instead of killing the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        # Signal handlers can only be set from the main thread (elsewhere: keep defaults).
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
