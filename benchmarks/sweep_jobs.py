"""Whether training a sweep's runs side by side pays: `tel sweep --jobs N` for each N,
each from scratch in a folder of its own, wall time side by side.

    python benchmarks/sweep_jobs.py experiments/positional --seeds 1337,1,2 \\
        --set train.max_steps=300 --jobs 1,2
    python benchmarks/sweep_jobs.py experiments/sweeps/lr_vs_batch.toml --jobs 1,2

With N jobs on C cores every run gets C / N threads: fewer threads per run, but the
start-up of one run (imports, tokenizing, building) overlaps the training of another,
and small matrices use few threads well. The table says which wins here. The token
cache is filled first (one step of the first run), so no timed sweep tokenizes. Every sweep is
trained whole; the runs are kept (``--keep DIR``) or deleted. This is a command that
prints numbers, never a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def warm_token_cache(args: argparse.Namespace, root: Path) -> None:
    """Train one step of the first run, so that no timed sweep pays for tokenizing."""
    from tel_core.sweep import load_plan, parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds else None
    plan = load_plan(Path(args.source), seeds, args.overrides, root / "warm-up")
    first = plan.runs[0]
    command = [sys.executable, "-m", "tel_core", *first.arguments()]
    command += ["--set", "train.max_steps=1", "--set", "sample.max_new_tokens=0"]
    subprocess.run(command, capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a sweep file or a folder of experiments")
    parser.add_argument("--jobs", default="1,2", help="the --jobs values to time (1,2)")
    parser.add_argument("--seeds", help="passed to tel sweep")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--keep", type=Path, help="keep the sweeps' runs under this folder")
    args = parser.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    root = args.keep or Path(tempfile.mkdtemp(prefix="tel-sweep-jobs-"))
    warm_token_cache(args, root)
    rows = []
    for n in jobs:
        command = [sys.executable, "-m", "tel_core", "sweep", args.source, "--jobs", str(n)]
        command += ["--runs-dir", str(root / f"jobs-{n}")]
        if args.seeds:
            command += ["--seeds", args.seeds]
        for item in args.overrides:
            command += ["--set", item]
        print(f"--jobs {n}: {' '.join(command[3:])}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode:
            sys.exit(f"--jobs {n} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        sweep = next((root / f"jobs-{n}").glob("*/sweep.json"))
        runs = json.loads(sweep.read_text())["runs"]
        train_s = sum(r.get("wall_s", 0) for r in runs)
        rows.append((n, wall, len(runs), train_s))
    base = rows[0][1]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.source}: {rows[0][2]} runs, {cores} CPU core(s)")
    print("| --jobs | wall | runs/min | sum of run times | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for n, wall, count, train_s in rows:
        print(
            f"| {n} | {wall / 60:.1f} min | {count / wall * 60:.2f} | {train_s / 60:.1f} min "
            f"| {base / wall:.2f}x |"
        )
    if args.keep is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
