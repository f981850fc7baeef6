"""Every attention x positional plugin x {bf16, fp16} trained two steps on a device.

    python benchmarks/gpu_variants.py --device cuda --out /tmp/variants
    python benchmarks/gpu_variants.py --device cpu --precisions bf16 --attention causal

For each combination (built-in and any other installed plugin of the two kinds) it trains
a tiny model on a synthetic Markov chain for two steps under the precision's autocast,
with the attention probe recording, then checks:

- the losses are finite and (bf16) no step was skipped;
- the attention probe wrote finite entropies for every layer;
- the model's logits fed token by token through the KV cache equal its logits over the
  whole sequence (to the precision's rounding), and greedy generation gives the same
  tokens with the cache and without it (a mismatch in the tokens alone is a note: a
  rounding tie may flip an argmax).

A combination the plugins refuse (one line, ``TelError``) is counted as refused, not
failed. It prints one line per combination and a summary line, and exits with the number
of failures. ``benchmarks/gpu_check.sh`` runs it first on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch

from tel_core.errors import TelError
from tel_core.model.sampling import generate
from tel_core.registry.registry import Registry
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_core.use.load_run import load_run

#: A tiny model on a synthetic task: each run takes about a second on a GPU.
TINY = {
    "seed": 3,
    "data": {
        "dataset": {
            "name": "markov",
            "alphabet_size": 16,
            "order": 2,
            "train_symbols": 20_000,
            "val_symbols": 5_000,
        },
        "tokenizer": "byte",
        "block_size": 64,
    },
    "model": {"d_model": 64, "n_layers": 2, "n_heads": 4},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "schedule": {"name": "constant"},
    "train": {"batch_size": 8, "max_steps": 2, "eval_every": 2, "eval_batches": 1},
    "sample": {"max_new_tokens": 0},
    "loggers": [],
    "probes": [{"name": "attention", "every": 1, "rows": 2, "heatmaps": False}],
}

#: How far the cached logits may stray from the whole-sequence ones, relative to the
#: logits' largest magnitude.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3}


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def check_one(
    attention: str, positional: str, precision: str, device: str, out: Path, registry: Registry
) -> tuple[str, str]:
    """Train one combination; returns (status, note) with status PASS, FAIL or REFUSED."""
    cfg = json.loads(json.dumps(TINY))
    cfg["name"] = f"{attention}-{positional}-{precision}"
    cfg["model"]["attention"] = {"name": attention}
    cfg["model"]["positional"] = {"name": positional}
    cfg["train"].update(device=device, precision=precision)
    run_dir = out / cfg["name"]
    try:
        experiment = experiment_from_dict(cfg, registry)
    except TelError as exc:
        return "REFUSED", str(exc).splitlines()[0][:120]
    try:
        run(experiment, run_dir, registry, overwrite=True)
    except TelError as exc:  # refused once built (at its first forward, say)
        return "REFUSED", "while training: " + str(exc).splitlines()[0][:110]

    rows = records(run_dir)
    train = [r for r in rows if "train/loss" in r]
    problems = []
    if len(train) != 2 or not all(math.isfinite(r["train/loss"]) for r in train):
        problems.append(f"losses {[r.get('train/loss') for r in train]}")
    if precision == "bf16" and any(r.get("train/skipped") for r in train):
        problems.append("bf16 skipped a step")
    entropies = [v for r in rows for k, v in r.items() if k.startswith("attn/entropy/layer")]
    if not entropies or not all(math.isfinite(v) for v in entropies):
        problems.append(f"attention entropies {entropies[:4]}")

    loaded = load_run(run_dir, "latest", device=device, registry=registry)
    model = loaded.model
    ids = torch.randint(0, model.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    ids = ids.to(model.token_embedding.weight.device)
    with torch.no_grad(), loaded.precision.autocast():
        whole = model(ids).float()
        kv = model.new_cache()
        parts = [model.forward_cached(ids[:, :16], kv)]
        parts += [model.forward_cached(ids[:, t : t + 1], kv) for t in range(16, ids.size(1))]
        cached = torch.cat(parts, dim=1).float()
        first = ids[:1, :8]
        with_cache = generate(model, first, 24, temperature=0.0, cache=True)
        without = generate(model, first, 24, temperature=0.0, cache=False)
    if not torch.isfinite(whole).all():
        problems.append("non-finite logits")
    scale = whole.abs().max().item() or 1.0
    error = (cached - whole).abs().max().item() / scale
    if not error <= TOLERANCE[precision]:
        problems.append(f"KV cache differs by {error:.2g} of the logits' scale")
    note = f"loss {train[0]['train/loss']:.3f}->{train[-1]['train/loss']:.3f}, kv err {error:.1e}"
    if not torch.equal(with_cache, without):
        note += ", greedy tokens differ (tie?)"
    if problems:
        return "FAIL", "; ".join(problems)
    return "PASS", note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tel-variants"))
    parser.add_argument("--precisions", default="bf16,fp16")
    parser.add_argument("--attention", default="", help="only these (comma-separated)")
    parser.add_argument("--positional", default="", help="only these (comma-separated)")
    args = parser.parse_args(argv)

    registry = Registry()
    registry.load_entry_points()
    every = {kind: sorted(registry.components(kind)) for kind in ("attention", "positional")}
    attentions = args.attention.split(",") if args.attention else every["attention"]
    positionals = args.positional.split(",") if args.positional else every["positional"]
    counts = {"PASS": 0, "FAIL": 0, "REFUSED": 0}
    start = time.perf_counter()
    for precision in args.precisions.split(","):
        for attention in attentions:
            for positional in positionals:
                try:
                    status, note = check_one(
                        attention, positional, precision, args.device, args.out, registry
                    )
                except Exception as exc:  # a crash is this combination's failure, not the run's
                    lines = traceback.format_exception(exc)
                    print("".join(lines[-6:]), file=sys.stderr, flush=True)
                    status, note = "FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                counts[status] += 1
                print(
                    f"{status:8s} {attention:8s} {positional:11s} {precision}  {note}", flush=True
                )
    seconds = time.perf_counter() - start
    print(
        f"variants: {counts['PASS']} passed, {counts['FAIL']} failed, "
        f"{counts['REFUSED']} refused in {seconds:.0f} s",
        flush=True,
    )
    return counts["FAIL"]


if __name__ == "__main__":
    sys.exit(main())
