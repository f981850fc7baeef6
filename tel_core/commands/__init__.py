"""One module per `tel` command.

Each module defines ``add_parser(commands)``, which adds its subparser and sets
``handler`` to a function taking the parsed arguments and returning an exit code. The
handler is a thin shell over a Python function a notebook can call too. Heavy imports
(torch, the plugins, matplotlib) happen inside the handlers, so that `tel --help`
answers at once. A new command is a new module here and its name in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# In the order `tel --help` lists them.
COMMANDS = (
    "run",
    "data",
    "eval",
    "generate",
    "chat",
    "export",
    "sweep",
    "compare",
    "plot",
    "report",
    "plugins",
)


def rank() -> int:
    """This process's rank under torchrun (0 otherwise), read without importing torch."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, --checkpoint and --device: what every command using a trained model takes."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (runs/x)")
    parser.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="best, latest, step:N or the path of a checkpoint file "
        "(default: best, or latest if the run was never evaluated)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, CUDA if present)"
    )
