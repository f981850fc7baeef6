"""The `tel` command line.

Heavy imports (torch, the plugins) happen inside the commands that need them, so that
`tel --help` and `tel plugins --help` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tel_core import __version__
from tel_core.errors import TelError
from tel_core.stopping import Stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    run = commands.add_parser(
        "run",
        help="train the experiment described by a TOML file",
        description="Train the experiment described by a TOML file.",
    )
    run.add_argument("file", type=Path, help="the experiment file, e.g. experiments/rope.toml")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set train.max_steps=200 (repeatable); "
        "VALUE is read as TOML where it parses, else as a string",
    )
    run.add_argument("--run-dir", type=Path, help="where to write the run (default: runs/<name>)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished or stopped run in the run directory",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the run directory from its checkpoints/latest.pt "
        "(the [model] and [data] sections must be unchanged)",
    )
    run.set_defaults(handler=_run)

    plugins = commands.add_parser(
        "plugins",
        help="list every registered component, by kind",
        description="List every registered component, by kind, with the distribution that "
        "provides it and its options; plugins that failed to load are listed with their error.",
    )
    plugins.add_argument("--kind", help="only this kind (dataset, attention, ...)")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=_plugins)
    show = plugins.add_subparsers(dest="plugins_command", metavar="show").add_parser(
        "show",
        help="one component in full: docs, source, options, and how to select it",
        description="One component in full: its docs, source, options with types, defaults "
        "and docs, and the experiment-file table that selects it.",
    )
    show.add_argument("kind", help="dataset, tokenizer, attention, positional, norm, ...")
    show.add_argument("name", help="the component's registered name, e.g. rope")
    # SUPPRESS: an absent --json here must not undo `tel plugins --json show ...`.
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return parser


def _run(args: argparse.Namespace) -> int:
    from tel_core.config_loader import load_experiment
    from tel_core.train import run

    experiment = load_experiment(args.file, args.overrides)
    result = run(experiment, args.run_dir, overwrite=args.overwrite, resume=args.resume)
    from tel_core import ui

    if _rank() == 0:
        ui.info(
            f"{experiment.name}: val loss {result.final_val_loss:.4f} "
            f"(best {result.best_val_loss:.4f}) after {result.steps} steps -> {result.run_dir}"
        )
    return 0


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _plugins(args: argparse.Namespace) -> int:
    from tel_core import listing
    from tel_core.registry import KINDS, default_registry

    registry = default_registry()
    if args.plugins_command == "show":
        if args.kind not in KINDS:
            raise TelError(f"unknown kind {args.kind!r}; kinds: {', '.join(KINDS)}")
        info = listing.component_info(registry.get(args.kind, args.name))
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            listing.print_component(info)
        return 0
    kinds = list(KINDS)
    if args.kind:
        if args.kind not in KINDS:
            raise TelError(f"unknown kind {args.kind!r}; kinds: {', '.join(KINDS)}")
        kinds = [args.kind]
    data = listing.listing(registry, kinds)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        listing.print_listing(data)
    return 0


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
        rank = _rank()
        if isinstance(exc, Stopped):  # a checkpoint was saved: exit as the signal asks
            if rank == 0:
                print(f"tel: {exc}", file=sys.stderr)
            return exc.exit_code
        # Under torchrun, the other processes say which one they are.
        where = f"[rank {rank}] " if rank else ""
        print(f"tel: error: {where}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
