"""`tel data prepare FILE` and `tel data analyze FILE`: an experiment's data, ahead of training."""

from __future__ import annotations

import argparse
from pathlib import Path

from tel_core.errors import TelError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", type=Path, help="the experiment file, e.g. experiments/tinystories.toml"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, as for tel run (repeatable)",
    )


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes such as 1024,4096,16384, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 257:
        raise argparse.ArgumentTypeError(
            "each vocabulary size must be at least 257 (256 bytes + 1)"
        )
    return sizes


def add_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data",
        help="tokenize an experiment's data ahead of training, or choose a vocabulary size",
        description="Work on an experiment's data before training it.",
    )
    data.set_defaults(handler=lambda args: _missing(data))
    which = data.add_subparsers(dest="data_command", metavar="prepare|analyze")
    prepare = which.add_parser(
        "prepare",
        help="tokenize the data into the token cache and print its statistics",
        description="Tokenize an experiment's data into the token cache that tel run reads, "
        "and print documents, tokens, bytes per token and tokens per document for each split.",
    )
    _common(prepare)
    prepare.set_defaults(handler=_prepare)
    analyze = which.add_parser(
        "analyze",
        help="train a BPE per vocabulary size on a sample and compare them",
        description="Train a byte-level BPE per vocabulary size on a sample of the training "
        "split and print, on a sample of the validation split, bytes per token, tokens per "
        "document (median, p95) and the share of the vocabulary used.",
    )
    _common(analyze)
    analyze.add_argument(
        "--vocab-sizes",
        type=_sizes,
        default=[1024, 4096, 16384],
        metavar="N,N,...",
        help="vocabulary sizes to compare (default: 1024,4096,16384)",
    )
    analyze.add_argument(
        "--sample-mb", type=float, default=8.0, help="MB of training text to train on (default 8)"
    )
    analyze.add_argument(
        "--eval-mb", type=float, default=2.0, help="MB of validation text to measure (default 2)"
    )
    analyze.set_defaults(handler=_analyze)


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _prepare(args: argparse.Namespace) -> int:
    from tel_core.data.statistics import prepare, print_prepare
    from tel_core.train.experiment import load_experiment

    print_prepare(prepare(load_experiment(args.file, args.overrides)))
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from tel_core.data.statistics import analyze, print_analysis
    from tel_core.train.experiment import load_experiment

    if args.sample_mb <= 0 or args.eval_mb <= 0:
        raise TelError("--sample-mb and --eval-mb must be positive")
    experiment = load_experiment(args.file, args.overrides)
    print_analysis(
        analyze(experiment, args.vocab_sizes, int(args.sample_mb * 1e6), int(args.eval_mb * 1e6))
    )
    return 0
