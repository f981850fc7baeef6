"""How tel's cost grows with its work: tokens/s, MFU and peak memory against model size
and block size, in fp32 and bf16, in one run.

    python benchmarks/scaling.py
    python benchmarks/scaling.py --sizes 0.8M,10.6M --blocks 64,256,1024 --precision fp32
    python benchmarks/scaling.py --steps 3 --warmup 1 --tokens-per-step 2048 --json out.json

The models (GPT shapes on the embedded byte-level corpus, ``experiments/baseline.toml``
otherwise): 0.8M = 4 layers x width 128 (nanoGPT's CPU "baby"), 10.6M = 6 x 384
(nanoGPT's Shakespeare model), 50M = 10 x 640. Every block size trains the same number of
tokens a step (batch = tokens per step / block size), so a row compares like with like.
Each measurement is ``benchmarks/training.py``'s: a fresh process, the real ``Trainer``
and training step, ``--warmup`` untimed steps, then ``--steps`` timed ones. MFU is the
model's training FLOPs (``flops_per_token``, attention included) over the device's peak
for the precision (``tel_core.train.mfu``). A command that prints numbers, never a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training import measure_apart, peaks, prepare

ROOT = Path(__file__).resolve().parent.parent
BASE = str(ROOT / "experiments" / "baseline.toml")
#: name: (n_layers, n_heads, d_model)
SIZES = {"0.8M": (4, 4, 128), "10.6M": (6, 6, 384), "50M": (10, 10, 640)}


def overrides(size: str, block: int, tokens_per_step: int) -> list[str]:
    layers, heads, width = SIZES[size]
    return [
        f"model.n_layers={layers}",
        f"model.n_heads={heads}",
        f"model.d_model={width}",
        f"data.block_size={block}",
        f"train.batch_size={max(1, tokens_per_step // block)}",
    ]


def table(results: list[dict[str, Any]]) -> str:
    header = ("model", "params", "block", "batch", "precision", "tokens/s", "ms/step", "MFU")
    header += ("peak MB", "training MB")
    rows = [header]
    for r in results:
        first = (r["size"], r.get("params", ""), str(r["block"]), str(r["batch"]), r["precision"])
        if "error" in r:
            rows.append((*first, r["error"]))
            continue
        training = "-" if r["training_mb"] is None else f"{r['training_mb']:,.0f}"
        rows.append(
            (
                *first,
                f"{r['tokens_per_s']:,.0f}",
                f"{r['ms_per_step']:,.1f}",
                f"{100 * r['mfu']:.1f}%",
                f"{r['peak_mb']:,.0f}",
                training,
            )
        )
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i]) for i, c in enumerate(row)
        ).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"of {', '.join(SIZES)}")
    parser.add_argument("--blocks", default="64,128,256,512,1024", help="block sizes")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated")
    parser.add_argument("--tokens-per-step", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="K=V")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    if unknown := [s for s in sizes if s not in SIZES]:
        parser.error(f"unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    blocks = [int(b) for b in args.blocks.split(",")]
    precisions = args.precision.split(",")

    from tel_core.errors import TelError

    try:
        prepare(BASE, [f"data.block_size={max(blocks)}", *args.extra])
    except TelError as exc:
        print(f"scaling: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{BASE}: {args.tokens_per_step} tokens a step; {args.steps} timed steps after "
        f"{args.warmup} warm-up steps, each variant in a fresh process"
    )
    results = []
    for size in sizes:
        for block in blocks:
            for precision in precisions:
                settings = [*overrides(size, block, args.tokens_per_step), *args.extra]
                variant = {"precision": precision, "compile": False, "checkpointing": False}
                row = {
                    "size": size,
                    "block": block,
                    "batch": max(1, args.tokens_per_step // block),
                }
                try:
                    measured = measure_apart(BASE, settings, variant, args.steps, args.warmup)
                    row |= measured | {"params": f"{measured['parameters'] / 1e6:.1f}M"}
                except TelError as exc:
                    row |= {"precision": precision, "error": str(exc)}
                results.append(row)
                print(f"  measured {size} block {block} {precision}", file=sys.stderr)
    device = next((r["device"] for r in results if "device" in r), "?")
    threads = next((r["threads"] for r in results if "threads" in r), "?")
    print(f"on {device} ({threads} threads)")
    print(peaks(results))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
