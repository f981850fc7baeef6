"""Metrics as JSON lines, to a file or to standard output, for other tools to read.

(The run directory's metrics.jsonl is written by the core whatever loggers are chosen;
this logger is for streaming the same records somewhere else, e.g. ``| jq``.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import attrs

from tel_core import hookimpl, ui
from tel_core.interfaces import Logger, LoggerContext


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
        if options.path == "-":
            self.stream, self.owned = sys.stdout, False
        else:
            path = ctx.run_dir / Path(options.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.stream, self.owned = open(path, "a", encoding="utf-8"), True  # noqa: SIM115 - kept open

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        ui.write_json_line(self.stream, {"step": step, **metrics})

    def log_text(self, step: int, name: str, text: str) -> None:
        if self.text:
            ui.write_json_line(self.stream, {"step": step, f"text/{name}": text})

    def close(self) -> None:
        self.stream.flush()
        if self.owned:
            self.stream.close()


@hookimpl
def register_loggers(register):
    register("json", JsonLogger, options=JsonOptions)
