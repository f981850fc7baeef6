"""The terminal: one rich Console shared by the core and the console logger.

Printing through the same Console keeps messages above a live progress bar instead of
tearing through it.
"""

from __future__ import annotations

import json
import math
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
