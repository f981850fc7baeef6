"""Metrics as JSON lines, to a file or to standard output, for other tools to read.

(The run directory's metrics.jsonl is written by the core whatever loggers are chosen;
this logger is for streaming the same records somewhere else, e.g. ``| jq``.)

A file inside the run directory is part of the run: a new run replaces what it held and
a resumed run drops its records after the checkpoint's step, both at the first record
written, so that a run that fails to start leaves it as it was. A file elsewhere is
appended to, run after run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs

from tel_core.plugin import (
    ConfigError,
    Logger,
    LoggerContext,
    hookimpl,
    truncate_metrics,
    write_json_line,
)


@attrs.frozen
class JsonOptions:
    #: "-" for standard output, else a file path (relative paths land in the run directory).
    path: str = "-"
    #: Write text (samples, notices) too, as {"step": ..., "text/<name>": ...}.
    text: bool = True


class JsonLogger(Logger):
    """One JSON object per line: {"step": ..., "<metric>": ...}."""

    def __init__(self, options: JsonOptions, ctx: LoggerContext) -> None:
        self.text = options.text
        self.stream: IO[str] | None = sys.stdout if options.path == "-" else None
        self.owned = self.stream is None
        self.path = ctx.run_dir / Path(options.path)
        self.start_step = ctx.start_step
        if self.owned:
            try:  # fail now, before training, if the file cannot be written
                self.path.parent.mkdir(parents=True, exist_ok=True)
                open(self.path, "a").close()
            except OSError as exc:
                raise ConfigError(
                    f"[[loggers]] json path = {options.path!r}: cannot write "
                    f"{exc.filename or self.path}: {exc.strerror or exc}"
                ) from exc
        self.in_run = self.owned and self.path.resolve().is_relative_to(ctx.run_dir.resolve())

    def _open(self) -> IO[str]:
        if self.stream is None:
            if self.in_run:  # a new run (start_step 0) keeps nothing; a resumed one, its past
                truncate_metrics(self.path, self.start_step)
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        return self.stream

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        write_json_line(self._open(), {"step": step, **metrics})

    def log_text(self, step: int, name: str, text: str) -> None:
        if self.text:
            write_json_line(self._open(), {"step": step, f"text/{name}": text})

    def close(self) -> None:
        if self.stream is None:
            return
        self.stream.flush()
        if self.owned:
            self.stream.close()
            self.stream = None


@hookimpl
def register_loggers(register):
    register("json", JsonLogger, options=JsonOptions)
