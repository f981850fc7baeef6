"""What the probes show on two ablation families: attention entropy per layer of RoPE
against NoPE, and gradient norms per layer of pre-LN against post-LN.

    python benchmarks/probe_findings.py                      # 400 steps a member
    python benchmarks/probe_findings.py --steps 1500         # the families' full length
    python benchmarks/probe_findings.py --report-only        # the tables of runs already there

Each member trains as ``tel run experiments/<family>/<member>.toml --set
train.max_steps=N`` with the ``attention`` and ``grad_norms`` probes every ``--every``
steps, into ``--runs/<family>-<member>``; the tables are read from the run directories'
``metrics.jsonl`` alone. Per layer: the attention entropy (bits, mean over heads and
queries) and mean attention distance at the last step; the gradient norm of each block
at the last step and averaged over every probe step after the first tenth of the run
(warm-up aside), and the update-to-weight ratio averaged likewise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

MEMBERS = {
    "positional": ("rope", "nope"),
    "norm": ("pre-layernorm", "post-layernorm"),
}


def probes(every: int) -> str:
    return (
        f'probes=[{{name = "attention", every = {every}, heatmaps = false}}, '
        f'{{name = "grad_norms", every = {every}}}]'
    )


def train(family: str, member: str, runs: Path, steps: int, every: int) -> Path:
    run_dir = runs / f"{family}-{member}"
    command = [
        sys.executable, "-m", "tel_core", "run", f"experiments/{family}/{member}.toml",
        "--set", f"train.max_steps={steps}",
        "--set", probes(every),
        "--set", "loggers=[]",
        "--run-dir", str(run_dir),
        "--overwrite",
    ]  # fmt: skip
    print("  " + " ".join(command[1:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ})
    return run_dir


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def n_layers(run_dir: Path) -> int:
    import tomllib

    return tomllib.loads((run_dir / "config.toml").read_text())["model"]["n_layers"]


def last(rows: list[dict], key: str) -> float:
    return [r[key] for r in rows if key in r][-1]


def settled_mean(rows: list[dict], key: str, steps: int) -> float:
    values = [r[key] for r in rows if key in r and r["step"] > steps // 10]
    return statistics.fmean(values)


def attention_table(runs: Path) -> str:
    members = [runs / f"positional-{m}" for m in MEMBERS["positional"]]
    n = n_layers(members[0])
    lines = ["| member | " + " | ".join(f"layer {i}" for i in range(n)) + " | val loss |"]
    lines.append("| --- |" + " --- |" * (n + 1))
    for run_dir in members:
        rows = records(run_dir)
        cells = [
            f"{last(rows, f'attn/entropy/layer{i}'):.2f} bits, "
            f"{last(rows, f'attn/distance/layer{i}'):.1f} apart"
            for i in range(n)
        ]
        cells.append(f"{last(rows, 'val/loss'):.3f}")
        lines.append(f"| `{run_dir.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gradient_table(runs: Path, steps: int) -> str:
    members = [runs / f"norm-{m}" for m in MEMBERS["norm"]]
    n = n_layers(members[0])
    lines = ["| member | measure | " + " | ".join(f"block {i}" for i in range(n)) + " |"]
    lines.append("| --- | --- |" + " --- |" * n)
    for run_dir in members:
        rows = records(run_dir)
        measures = {
            "grad norm, last step": [
                f"{last(rows, f'grad_norm/blocks.{i}'):.3f}" for i in range(n)
            ],
            "grad norm, mean": [
                f"{settled_mean(rows, f'grad_norm/blocks.{i}', steps):.3f}" for i in range(n)
            ],
            "update ratio, mean": [
                f"{settled_mean(rows, f'update_ratio/blocks.{i}', steps):.2e}" for i in range(n)
            ],
        }
        for measure, cells in measures.items():
            lines.append(f"| `{run_dir.name}` | {measure} | {' | '.join(cells)} |")
        lines.append(
            f"| `{run_dir.name}` | val loss | {last(rows, 'val/loss'):.3f} |" + " |" * (n - 1)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per member")
    parser.add_argument("--every", type=int, default=50, help="the probes' every")
    parser.add_argument("--runs", type=Path, default=Path("runs/probe-findings"))
    parser.add_argument("--report-only", action="store_true", help="train nothing")
    args = parser.parse_args(argv)
    if not args.report_only:
        for family, members in MEMBERS.items():
            for member in members:
                train(family, member, args.runs, args.steps, args.every)
    print(f"Attention entropy and mean distance per layer at step {args.steps}:\n")
    print(attention_table(args.runs))
    print(f"\nGradient norm and update-to-weight ratio per block ({args.steps} steps):\n")
    print(gradient_table(args.runs, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
