"""`tel sweep SWEEP.toml | EXPERIMENT_DIR`: a family or a grid over seeds, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="train a family of experiments or a grid over seeds, then compare them",
        description="Train every member of a sweep (a sweep file's grid, or a folder of "
        "experiment files) for every seed into runs/<sweep>/<member>/seed-<s>/, then print "
        "their comparison. Running it again skips finished runs, resumes stopped or killed "
        "ones from their checkpoints and retries failed ones. Ctrl-C stops every running "
        "member at a step boundary, each with its checkpoint.",
    )
    sweep.add_argument(
        "source", type=Path, metavar="SWEEP_OR_DIR", help="a sweep file, or a folder of experiments"
    )
    sweep.add_argument("--seeds", metavar="S,S,...", help="the seeds, e.g. 1337,1,2")
    sweep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key in every member (after the sweep file's [set]; repeatable)",
    )
    sweep.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, sharing the CPU threads (1)"
    )
    sweep.add_argument("--executor", choices=("local", "slurm"), default="local")
    sweep.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where sweeps go (runs/)"
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list the runs and the commands that train them"
    )
    slurm = sweep.add_argument_group("--executor slurm (submitit; runs on shared storage)")
    slurm.add_argument("--partition", help="the SLURM partition")
    slurm.add_argument("--time", type=int, default=60, metavar="MIN", help="minutes per run (60)")
    slurm.add_argument("--gpus-per-member", type=int, default=0, metavar="N")
    slurm.add_argument("--cpus-per-member", type=int, metavar="N")
    slurm.add_argument("--mem-gb", type=float, metavar="GB")
    slurm.add_argument(
        "--array-parallelism", type=int, default=16, metavar="N", help="tasks running at once (16)"
    )
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from tel_core.errors import ConfigError
    from tel_core.sweep import SlurmOptions, dry_run, load_plan, parse_seeds, run_sweep

    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected 1 or more")
    seeds = parse_seeds(args.seeds) if args.seeds else None
    plan = load_plan(args.source, seeds, args.overrides, args.runs_dir)
    if args.dry_run:
        dry_run(plan)
        return 0
    slurm = SlurmOptions(
        partition=args.partition,
        time_min=args.time,
        gpus_per_member=args.gpus_per_member,
        cpus_per_member=args.cpus_per_member,
        mem_gb=args.mem_gb,
        array_parallelism=args.array_parallelism,
    )
    result = run_sweep(plan, args.jobs, args.executor, slurm)
    print_comparison(plan.directory)
    return 1 if result.failed else 0


def print_comparison(directory: Path) -> None:
    """The comparison of whatever the sweep has trained so far."""
    from tel_core import ui
    from tel_core.analysis.compare import compare
    from tel_core.analysis.runs import find_runs
    from tel_core.analysis.tables import render
    from tel_core.errors import TelError

    try:
        runs = find_runs([directory])
        print(render(compare(runs)), end="")
    except TelError as exc:
        ui.info(f"no comparison yet: {exc}")
