"""`tel report RUN_OR_SWEEP_DIR... -o report.html`: one self-contained HTML page."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tel_core.commands.compare import add_selection_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="write one offline HTML page: comparison, config diff, plots, samples, probes",
        description="Write one self-contained HTML file (plotly embedded; it opens without a "
        "network): the comparison table, the config diff, interactive plots of every curve, "
        "each arm's samples side by side, and what the runs' probes recorded.",
    )
    add_selection_arguments(report)
    report.add_argument(
        "-o", "--output", type=Path, default=Path("report.html"), help="the page (report.html)"
    )
    report.add_argument(
        "--watch",
        type=int,
        metavar="SECONDS",
        help="rewrite the page every SECONDS until every run has finished; the page reloads "
        "itself meanwhile",
    )
    report.add_argument("--smooth", type=float, default=0.6, metavar="W", help="EMA weight (0.6)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from tel_core import ui
    from tel_core.analysis.compare import compare
    from tel_core.analysis.report import build_report, write_report
    from tel_core.analysis.runs import find_runs
    from tel_core.errors import ConfigError

    if args.watch is not None and args.watch < 1:
        raise ConfigError(f"--watch {args.watch}: expected a number of seconds, 1 or more")
    while True:
        runs = find_runs(args.paths)
        comparison = compare(runs, args.metric, args.at, args.baseline, args.by, args.alpha)
        write_report(
            build_report(comparison, smoothing=args.smooth, refresh_s=args.watch), args.output
        )
        training = [r for r in runs if r.status not in ("done", "diverged")]
        ui.info(
            f"wrote {args.output}: {len(runs)} run(s) in {len(comparison.summaries)} arm(s)"
            + (f", {len(training)} still training or stopped" if training else "")
        )
        if args.watch is None or not training:
            return 0
        time.sleep(args.watch)
