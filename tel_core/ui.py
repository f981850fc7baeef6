"""What tel writes for people and for tools: the terminal, and JSON lines.

One rich Console is shared by the core and the console logger: printing through the same
Console keeps messages above a live progress bar instead of tearing through it. JSON lines
(``metrics.jsonl``, the probes' records, the json logger) are one object a line, each with
its ``step``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from rich.console import Console

# soft_wrap: a long line stays one line in a log file instead of being cut at 80 columns.
console = Console(highlight=False, soft_wrap=True)


def info(message: str) -> None:
    """A notice for the person at the terminal (not a metric)."""
    console.print(message, markup=False)


def json_line(record: dict[str, Any]) -> str:
    """One JSON object on one line; NaN and infinities become null to stay valid JSON."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean, ensure_ascii=False)


def write_json_line(stream: IO[str], record: dict[str, Any]) -> None:
    stream.write(json_line(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of ``path`` up to ``step``; rewritten atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        if record.get("step", 0) <= step:
            kept.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
