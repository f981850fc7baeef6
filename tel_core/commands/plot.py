"""`tel plot RUN_OR_SWEEP_DIR... -o FILE.png`: curves with seed bands (matplotlib)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tel_core.commands.compare import add_selection_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    plot = commands.add_parser(
        "plot",
        help="draw loss, lr, tokens/s and gradient-norm curves of runs or sweeps",
        description="Draw each metric against steps, tokens, training FLOPs or wall time: "
        "an arm of several seeds as its mean with a shaded 95%% band. A learning-rate sweep "
        "also gets the final metric against the learning rate, a line per batch size.",
    )
    add_selection_arguments(plot)
    plot.add_argument(
        "-o", "--output", type=Path, default=Path("plot.png"), help="FILE.png, .svg or .pdf"
    )
    plot.add_argument("--x", choices=("step", "tokens", "flops", "time"), default="step")
    plot.add_argument(
        "--y",
        type=lambda text: [k.strip() for k in text.split(",") if k.strip()],
        metavar="METRIC,...",
        help="the panels (default: train/loss, val/loss, train/lr, train/tokens_per_s, "
        "train/grad_norm)",
    )
    plot.add_argument(
        "--smooth",
        type=float,
        default=0.6,
        metavar="W",
        help="EMA weight for train/* curves, 0 to 1 (0.6; 0: raw)",
    )
    plot.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from tel_core import ui
    from tel_core.analysis.compare import compare
    from tel_core.analysis.curves import DEFAULT_Y
    from tel_core.analysis.plots import plot
    from tel_core.analysis.runs import find_runs
    from tel_core.errors import ConfigError

    if not 0 <= args.smooth < 1:
        raise ConfigError(f"--smooth {args.smooth}: expected a weight from 0 up to 1")
    comparison = compare(
        find_runs(args.paths), args.metric, args.at, args.baseline, args.by, args.alpha
    )
    panels = plot(comparison, args.output, args.y or DEFAULT_Y, args.x, args.smooth)
    ui.info(f"wrote {args.output}: {', '.join(panels)}")
    return 0
