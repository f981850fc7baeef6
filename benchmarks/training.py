"""What precision, torch.compile and activation checkpointing buy: tokens/s and peak memory
of one experiment under each combination, side by side, measured in one run.

    python benchmarks/training.py experiments/baseline.toml
    python benchmarks/training.py experiments/baseline.toml --steps 50 \\
        --precision fp32,bf16 --compile off,on --checkpointing off,on \\
        --set train.batch_size=64 --json results.json

Every variant runs in a fresh process, so its peak memory is its own. It builds the
experiment's real ``Trainer``, takes ``--warmup`` steps (compilation happens there and is
reported apart) and then ``--steps`` timed steps of the real training step. Memory: on
CUDA, the most memory tensors ever took (``max_memory_allocated``); on a CPU, the peak
resident set size of the process, and how much of it training added over the state just
before the first step (activations, gradients, optimizer state). Evaluation, logging and
checkpoints are not part of the timed steps.

This is a command that prints numbers, never a test: timings depend on the machine and
on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import itertools
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SWITCHES = {"off": False, "on": True}


def current_rss_mb() -> float | None:
    """Resident memory now (Linux); None where /proc is not there."""
    try:
        import os

        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def measure(
    file: str, overrides: list[str], variant: dict[str, Any], steps: int, warmup: int
) -> dict[str, Any]:
    """One variant, in a process of its own."""
    import torch

    from tel_core import ui
    from tel_core.train.device import peak_memory_mb
    from tel_core.train.experiment import load_experiment
    from tel_core.train.loop import Trainer

    ui.console.quiet = True  # the Trainer's notices would interleave with the table
    settings = [
        f"train.precision={variant['precision']}",
        f"train.compile={str(variant['compile']).lower()}",
        f"train.activation_checkpointing={str(variant['checkpointing']).lower()}",
        f"train.max_steps={warmup + steps}",
        "loggers=[]",
    ]
    experiment = load_experiment(file, [*overrides, *settings])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(experiment, Path(run_dir), _registry())
        cuda = trainer.device.type == "cuda"

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(trainer.device)

        gc.collect()
        before = current_rss_mb()
        if cuda:
            torch.cuda.reset_peak_memory_stats(trainer.device)
        started = time.perf_counter()
        for step in range(1, warmup + 1):
            trainer.train_step(step)
        sync()
        warmup_s = time.perf_counter() - started
        tokens = 0
        started = time.perf_counter()
        for step in range(warmup + 1, warmup + steps + 1):
            tokens += trainer.train_step(step).tokens
        sync()
        elapsed = time.perf_counter() - started
        peak = peak_memory_mb(trainer.device)
        flops = tokens / elapsed * trainer.flops_per_token
        return {
            **variant,
            "precision_used": trainer.precision.name,
            "device": str(trainer.device),
            "tokens_per_s": tokens / elapsed,
            "mfu": flops / trainer.peak.flops,
            "peak_flops": trainer.peak.manifest(),
            "parameters": trainer.model.num_parameters(),
            "ms_per_step": 1000 * elapsed / steps,
            "peak_mb": peak,
            "training_mb": None if cuda or before is None else max(0.0, peak - before),
            "warmup_s": warmup_s,
            "tokens_per_step": tokens // steps,
            "threads": torch.get_num_threads(),
        }


def _registry():
    from tel_core.registry.registry import default_registry

    return default_registry()


def prepare(file: str, overrides: list[str]) -> str:
    """Tokenize once up front (a cold token cache would swell the first variant's memory)."""
    from tel_core.data.token_cache import prepare_tokens
    from tel_core.registry.interfaces import DataContext
    from tel_core.train.experiment import load_experiment

    experiment = load_experiment(file, overrides)
    data = experiment.data
    registry = _registry()
    context = DataContext(data.val_fraction, experiment.seed)
    dataset = registry.build("dataset", data.dataset, context)
    prepare_tokens(data, dataset, registry.build("tokenizer", data.tokenizer))
    batch = experiment.train.batch_size
    return f"{batch} x {data.block_size} tokens per step ({data.batching} batching)"


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "precision",
        "compile",
        "checkpointing",
        "tokens/s",
        "ms/step",
        "MFU",
        "peak MB",
        "training MB",
        "warm-up s",
    )
    rows = [header]
    for r in results:
        if "error" in r:
            rows.append((r["precision"], _on(r["compile"]), _on(r["checkpointing"]), r["error"]))
            continue
        precision = r["precision"]
        if r["precision_used"] != precision:
            precision += f" ({r['precision_used']})"
        rows.append(
            (
                precision,
                _on(r["compile"]),
                _on(r["checkpointing"]),
                f"{r['tokens_per_s']:,.0f}",
                f"{r['ms_per_step']:.1f}",
                f"{100 * r['mfu']:.1f}%",
                f"{r['peak_mb']:,.0f}",
                "-" if r["training_mb"] is None else f"{r['training_mb']:,.0f}",
                f"{r['warmup_s']:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def peaks(results: list[dict[str, Any]]) -> str:
    """What each MFU is against: one line per dtype."""
    found = {r["peak_flops"]["dtype"]: r["peak_flops"] for r in results if "peak_flops" in r}
    return "\n".join(
        f"MFU ({dtype}) against {p['flops_per_s'] / 1e9:,.0f} GFLOP/s, {p['source']}"
        for dtype, p in found.items()
    )


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def measure_apart(*args: Any) -> dict[str, Any]:
    """``measure(*args)`` in a fresh process: no variant inherits another's threads,
    allocator or compiled code. A TelError it raises is raised here."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(measure, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="the experiment, e.g. experiments/baseline.toml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated")
    parser.add_argument("--compile", default="off,on", help="off, on, or off,on")
    parser.add_argument("--checkpointing", default="off,on", help="off, on, or off,on")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    try:
        variants = [
            {"precision": p, "compile": SWITCHES[c], "checkpointing": SWITCHES[a]}
            for p, c, a in itertools.product(
                args.precision.split(","), args.compile.split(","), args.checkpointing.split(",")
            )
        ]
    except KeyError as exc:
        parser.error(f"--compile and --checkpointing take off and on, not {exc}")

    from tel_core.errors import TelError

    try:
        what = prepare(args.file, args.overrides)
    except TelError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: {what}; {args.steps} timed steps after {args.warmup} warm-up steps")
    if any(v["compile"] for v in variants):
        print("(compiled variants spend their first warm-up step compiling: a minute or more)")
    results = []
    for variant in variants:
        try:
            results.append(
                measure_apart(args.file, args.overrides, variant, args.steps, args.warmup)
            )
        except TelError as exc:  # e.g. fp16 on a CPU: say so in the table, go on
            results.append({**variant, "error": str(exc)})
        print(f"  measured {variant}", file=sys.stderr)
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
