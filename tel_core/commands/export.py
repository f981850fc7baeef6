"""`tel export RUN_DIR --format safetensors|hf -o OUT_DIR`: take a trained model away."""

from __future__ import annotations

import argparse
from pathlib import Path

from tel_core.commands import add_run_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a checkpoint as safetensors, or as a Hugging Face transformers model",
        description="Write a checkpoint as safetensors with tel's config and tokenizer "
        "(loadable by tel), or as a Hugging Face transformers model directory (GPT-2 for "
        "learned + LayerNorm + GELU MLP + pre-LN; Llama for RoPE + RMSNorm + SwiGLU + pre-LN).",
    )
    add_run_arguments(parser)
    parser.add_argument("--format", required=True, choices=("safetensors", "hf"))
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from tel_core import ui
    from tel_core.use.export import export_run
    from tel_core.use.load_run import load_run

    loaded = load_run(args.run_dir, args.checkpoint, device="cpu")
    result = export_run(loaded, args.format, args.out)
    check = ""
    if result.max_logit_difference is not None:
        check = (
            f"; loaded back with transformers, its logits differ from tel's by at most "
            f"{result.max_logit_difference:.2e}"
        )
    ui.info(
        f"exported {loaded.run_dir} (checkpoint {loaded.checkpoint}) as {result.architecture} "
        f"to {result.out_dir}: {', '.join(result.files)}{check}"
    )
    return 0
