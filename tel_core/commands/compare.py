"""`tel compare RUN_OR_SWEEP_DIR...`: arms side by side, with intervals and p-values."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare runs: arms with mean, 95%% CI and Welch p-values against a baseline",
        description="Group runs into arms (runs whose configs differ only in the seed), then "
        "show each arm's metric with its std and 95%% confidence interval, its difference "
        "from the baseline arm with Welch's t-test, and what it cost. Reads each run "
        "directory's config.toml, manifest.json and metrics.jsonl only.",
    )
    add_selection_arguments(compare)
    compare.add_argument(
        "--format",
        choices=("table", "markdown", "csv", "json"),
        default="table",
        help="table (default), markdown (a findings table to paste), csv, or json",
    )
    compare.set_defaults(handler=_compare)


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that say which runs, which metric and which arms (compare, sweep)."""
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="RUN_OR_SWEEP_DIR",
        help="run directories, sweep directories, or folders holding them",
    )
    parser.add_argument("--metric", default="val/loss", help="the metric to compare (val/loss)")
    parser.add_argument(
        "--at", default="final", help="final (default), best, or step:N: where to read it"
    )
    parser.add_argument(
        "--baseline", help="the arm the others are tested against (default: the first)"
    )
    parser.add_argument(
        "--by",
        type=lambda text: [k.strip() for k in text.split(",") if k.strip()],
        default=[],
        metavar="KEY,...",
        help="group runs into arms by these config keys (default: whatever differs)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="the significance level: p >= alpha reads 'within seed noise' (0.05)",
    )


def _compare(args: argparse.Namespace) -> int:
    from tel_core.analysis.compare import compare
    from tel_core.analysis.runs import find_runs
    from tel_core.analysis.tables import render

    comparison = compare(
        find_runs(args.paths), args.metric, args.at, args.baseline, args.by, args.alpha
    )
    print(render(comparison, args.format), end="")
    return 0
