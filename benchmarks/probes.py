"""What probes cost: the same training with each built-in probe, all of them, and none.

    python benchmarks/probes.py
    python benchmarks/probes.py experiments/baseline.toml --steps 1500 --every 50 --repeats 3

Every variant trains the experiment for ``--steps`` steps in a fresh process (one
evaluation, at the end, and no sample or logger, the same for all), with its probes at
``every = --every`` (``stability`` looks at every step, as it is meant to). Two numbers per
variant, side by side:

- ``probes s``: the time the probes themselves took, as the loop measured it
  (``time/probes_s``, summed), and its share of the training time: exact, and 0 with no
  probe selected (then the loop never calls one);
- ``wall s`` against ``none``: the training loop's whole time, compared with the run
  without probes. The second ``none`` row shows how far two identical runs drift apart
  on this machine, which is all a difference below that means.

With ``--repeats N`` the variants take turns N times and the medians are shown. This is
a command that prints numbers, never a test: timings depend on the machine and on
whatever else runs on it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: Each built-in probe at its cheapest useful settings, as experiments/probes.toml has it.
PROBES: dict[str, dict[str, Any]] = {
    "grad_norms": {"name": "grad_norms", "histograms": True},
    "activations": {"name": "activations"},
    "attention": {"name": "attention"},
    "stability": {"name": "stability"},
}


def variants(every: int) -> dict[str, list[dict[str, Any]]]:
    def at(table: dict[str, Any]) -> dict[str, Any]:
        return table if table["name"] == "stability" else {**table, "every": every}

    found: dict[str, list[dict[str, Any]]] = {"none": []}
    found.update({name: [at(table)] for name, table in PROBES.items()})
    found["all"] = [at(table) for table in PROBES.values()]
    found["none (again)"] = []
    return found


def toml_list(tables: list[dict[str, Any]]) -> str:
    """An inline TOML array of tables, for --set probes=[...]."""

    def value(v: Any) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    return (
        "["
        + ", ".join(
            "{" + ", ".join(f"{k} = {value(v)}" for k, v in t.items()) + "}" for t in tables
        )
        + "]"
    )


def measure(file: str, overrides: list[str], probes: list[dict[str, Any]], steps: int) -> dict:
    """One variant, in a process of its own: the loop's time and the probes' share."""
    from tel_core import ui
    from tel_core.registry.registry import default_registry
    from tel_core.train.experiment import load_experiment
    from tel_core.train.loop import Trainer

    ui.console.quiet = True
    settings = [
        f"train.max_steps={steps}",
        f"train.eval_every={steps}",
        "train.log_every=1",
        "sample.max_new_tokens=0",
        "loggers=[]",
        f"probes={toml_list(probes)}",
    ]
    experiment = load_experiment(file, [*overrides, *settings])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(experiment, Path(run_dir), default_registry())
        started = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - started
        trainer.close()
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").open()]
    train = [r for r in records if "train/loss" in r]
    return {
        "wall_s": wall,
        "step_s": sum(r["time/step_s"] for r in train),
        "probes_s": sum(r.get("time/probes_s", 0.0) for r in train),
        "tokens_per_s": statistics.median(r["train/tokens_per_s"] for r in train),
    }


def table(results: dict[str, list[dict[str, float]]]) -> str:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    header = ("probes", "wall s", "vs none", "probes s", "probes / training", "tokens/s")
    rows = [header]
    base = median("none", "wall_s")
    for name in results:
        wall, probes = median(name, "wall_s"), median(name, "probes_s")
        training = median(name, "step_s") + probes
        rows.append(
            (
                name,
                f"{wall:.1f}",
                f"{100 * (wall / base - 1):+.2f} %",
                f"{probes:.2f}",
                f"{100 * probes / training:.2f} %",
                f"{median(name, 'tokens_per_s'):,.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default="experiments/baseline.toml")
    parser.add_argument("--steps", type=int, default=500, help="training steps per variant")
    parser.add_argument("--every", type=int, default=50, help="the probes' every")
    parser.add_argument("--repeats", type=int, default=1, help="turns each variant takes")
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    chosen = variants(args.every)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",") or k == "none"}
    print(
        f"{args.file}: {args.steps} steps per variant, probes every {args.every} steps, "
        f"{args.repeats} turn(s) each"
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    spawn = multiprocessing.get_context("spawn")
    for turn in range(args.repeats):
        for name, probes in chosen.items():
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                future = pool.submit(measure, args.file, args.overrides, probes, args.steps)
                results[name].append(future.result())
            print(f"  turn {turn + 1}: {name}: {results[name][-1]['wall_s']:.1f} s", flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
