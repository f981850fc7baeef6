"""`tel eval RUN_DIR`: a checkpoint's loss, perplexity, bits and accuracy on a split."""

from __future__ import annotations

import argparse
import json

from tel_core.commands import add_run_arguments
from tel_core.errors import TelError


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="score a trained run's checkpoint on a split (loss, bits, accuracy, by position)",
        description="Score a checkpoint on a split: loss, perplexity, bits per token and per "
        "byte, top-1 and top-5 accuracy, and the loss at each position of the context. "
        "Written to RUN_DIR/eval/<checkpoint>-<split>.json (with a plot) and printed.",
    )
    add_run_arguments(parser)
    parser.add_argument("--split", default="val", choices=("val", "train"))
    parser.add_argument(
        "--batches",
        default="all",
        metavar="N|all",
        help="all: every window of the split once (default); N: N of the run's own "
        "validation draws (N = train.eval_batches reproduces its last val/loss)",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        metavar="N",
        help="window length (default: the trained one); longer measures length extrapolation",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="evaluate on other data, tokenized by the run's tokenizer "
        "(e.g. --set 'data.dataset.paths=[\"other.txt\"]'; repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the loss by position")
    parser.set_defaults(handler=_eval)


def _batches(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise TelError(f"--batches {text!r}: give a number of batches or all") from None


def _eval(args: argparse.Namespace) -> int:
    from tel_core import ui
    from tel_core.use.evaluate import evaluate_run, format_table, save_result
    from tel_core.use.load_run import load_run

    batches = _batches(args.batches)
    loaded = load_run(
        args.run_dir,
        args.checkpoint,
        block_size=args.block_size,
        data_overrides=args.overrides,
        device=args.device,
    )
    result = evaluate_run(loaded, args.split, batches, args.block_size, args.overrides)
    path, image = save_result(result, plot=not args.no_plot)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(format_table(result))
    drawn = f" and {image}" if image else ""
    if image is None and not args.no_plot:
        drawn = " (no plot: matplotlib is not installed; pip install 'tel[lab]')"
    ui.info(f"wrote {path}{drawn}")
    return 0
