"""The `tel` command line: the parser, and one-line errors with exit code 2.

The commands themselves live in ``tel_core.commands``, one module each.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from tel_core.commands import COMMANDS, rank
from tel_core.errors import TelError
from tel_core.train.stopping import Stopped
from tel_core.version import __version__


class Parser(argparse.ArgumentParser):
    """argparse, with tel's one-line errors, and no abbreviated options: ``--over`` must
    not quietly mean ``--overwrite``, which deletes a run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"tel: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tel",
        description="tel, a transformer training laboratory: train small decoder-only language "
        "models from TOML experiment files whose components are plugins.",
    )
    parser.add_argument("--version", action="version", version=f"tel {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of one line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tel_core.commands.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except TelError as exc:
        if args.debug:
            raise
        if isinstance(exc, Stopped):  # a checkpoint was saved: exit as the signal asks
            if rank() == 0:
                print(f"tel: {exc}", file=sys.stderr)
            return exc.exit_code
        # Under torchrun, the other processes say which one they are.
        where = f"[rank {rank()}] " if rank() else ""
        print(f"tel: error: {where}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
