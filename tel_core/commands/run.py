"""`tel run FILE`: train an experiment."""

from __future__ import annotations

import argparse
from pathlib import Path

from tel_core.commands import rank


def add_parser(commands: argparse._SubParsersAction) -> None:
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
        nargs="?",
        const=True,
        default=False,
        type=Path,
        metavar="CHECKPOINT",
        help="continue the run in the run directory from its checkpoints/latest.pt, or from "
        "the checkpoint file named (the [model], [data] and [optimizer] sections must match)",
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from tel_core import ui
    from tel_core.train.experiment import load_experiment
    from tel_core.train.run import run

    experiment = load_experiment(args.file, args.overrides)
    result = run(experiment, args.run_dir, overwrite=args.overwrite, resume=args.resume)
    if rank() == 0:
        ui.info(
            f"{experiment.name}: val loss {result.final_val_loss:.4f} "
            f"(best {result.best_val_loss:.4f}) after {result.steps} steps -> {result.run_dir}"
        )
    return 0
