"""One module per `tel` command.

Each module defines ``add_parser(commands)``, which adds its subparser and sets
``handler`` to a function taking the parsed arguments and returning an exit code. The
handler is a thin shell over a Python function a notebook can call too. Heavy imports
(torch, the plugins, matplotlib) happen inside the handlers, so that `tel --help`
answers at once. A new command is a new module here and its name in ``COMMANDS``.
"""

from __future__ import annotations

import os

# In the order `tel --help` lists them.
COMMANDS = ("run", "data", "plugins")


def rank() -> int:
    """This process's rank under torchrun (0 otherwise), read without importing torch."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
