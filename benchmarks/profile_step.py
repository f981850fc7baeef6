"""Where a training step's time goes: torch.profiler over real steps of any experiment.

    python benchmarks/profile_step.py experiments/baseline.toml
    python benchmarks/profile_step.py experiments/shakespeare_char.toml --steps 10 \\
        --set train.precision=bf16 --set 'data.dataset.paths=["input.txt"]'
    python benchmarks/profile_step.py experiments/baseline.toml --before 9590e0d

It builds the experiment's real ``Trainer``, takes ``--warmup`` untimed steps, then
profiles ``--steps`` calls of the real training step and prints, per step, how long each
phase took and, inside it, each family of operators:

- ``forward`` and ``backward`` by op family: matmul, attention (the fused kernel or its
  pieces), norm, softmax, activation, elementwise, embedding, dropout, casts (autocast's
  dtype conversions), views and other ops;
- ``loss`` (the cross-entropy, forward and backward), ``optimizer`` (``step`` and
  ``zero_grad``), ``grad norm`` (measuring and clipping), ``data`` (drawing the batch and
  copying it to the device);
- the host syncs (``.item()`` and friends: free on a CPU, a stall on a GPU) and the time
  no operator accounts for (Python, autograd bookkeeping, the profiler itself).

Times are the operators' CPU time (on CUDA also their kernels' device time). The phases
are found by labelling the trainer's parts from outside (``tel_core`` is not changed to
be profiled). ``--before REV`` profiles the same experiment on the tel of git revision
``REV`` too (its ``tel_core`` and plugins exported to a temporary folder) and prints the
two side by side. A command that prints numbers, never a test. (Not ``profile.py``: in
this folder that name would shadow the standard library's ``profile``, which torch imports,
for every script here.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The phases of a step, in the order a step runs them.
PHASES = ("data", "forward", "loss", "backward", "grad norm", "optimizer", "other")

#: Op family by a word in the (forward) op name or (backward) autograd node name;
#: the first match wins, so the specific come before the general.
FAMILIES = (
    ("casts", ("_to_copy", "tocopy")),  # aten::to converting dtype (or device)
    ("grad accumulation", ("accumulategrad",)),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "attention")),
    ("loss", ("nll_loss", "nllloss", "cross_entropy", "log_softmax", "logsoftmax")),
    ("softmax", ("softmax",)),
    ("norm", ("layer_norm", "layernorm", "rms_norm", "rmsnorm", "norm_")),
    ("matmul", ("linear", "addmm", "mm", "matmul", "bmm", "baddbmm", "einsum")),
    ("activation", ("gelu", "silu", "relu", "tanh", "sigmoid")),
    ("embedding", ("embedding",)),
    ("dropout", ("dropout",)),
    (
        "views",
        ("view", "transpose", "permute", "reshape", "split", "unsafe", "expand", "slice", "t"),
    ),
    ("elementwise", ("add", "mul", "div", "sub", "pow", "sum", "mean", "neg", "where", "fill")),
)
#: Events that wait for the device (or read a value back to the host).
SYNCS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize")
BACKWARD = "autograd::engine::evaluate_function: "
LABEL = "tel::"


def family(name: str) -> str:
    """The op family of a forward op or a backward node name."""
    if name.startswith(BACKWARD):  # "...: MmBackward0" -> "mm"
        name = re.sub(r"Backward\d*$", "", name[len(BACKWARD) :])
    low = name.lower()
    bare = low.removeprefix("aten::")
    for fam, words in FAMILIES:
        for word in words:
            # Short words must be the whole op name (aten::t, aten::mm), not a part of it.
            if (len(word) <= 2 and bare.rstrip("_") == word) or (len(word) > 2 and word in low):
                return fam
    return "other ops"


def label(trainer: Any) -> None:
    """Wrap the trainer's parts in profiler labels (``tel::<phase>/<part>``), from outside."""
    import torch
    from torch.profiler import record_function

    import tel_core.train.loop as train_module

    def labelled(what: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with record_function(LABEL + what):
                return fn(*args, **kwargs)

        return call

    for owner, name, what in (
        (trainer.sampler, "sample", "data/sample"),
        (trainer.precision, "backward", "backward/"),
        (train_module, "step_loss", "loss/forward"),
        (torch.nn.utils, "get_total_norm", "grad norm/measure"),
        (torch.nn.utils, "clip_grads_with_norm_", "grad norm/clip"),
    ):
        if not hasattr(owner, name):
            raise SystemExit(f"profile: {owner!r} has no {name!r} to label: update {__file__}")
        setattr(owner, name, labelled(what, getattr(owner, name)))
    trainer.train_model = labelled("forward/", trainer.train_model)


def classify(event: Any) -> tuple[str, str]:
    """(phase, family) of an operator event, from the labels and autograd nodes above it.

    In the forward and backward passes the family is that of the outermost operator (or
    autograd node) under the label: what the model called. A cast anywhere inside it
    (autocast's) counts as a cast.
    """
    node, chain = event, []
    while node is not None:
        name = node.name
        if name.startswith("Optimizer."):
            return "optimizer", "step" if name.startswith("Optimizer.step") else "zero_grad"
        if name.startswith(BACKWARD):
            if family(name) == "loss":  # the loss's own backward nodes count to the loss
                return "loss", "backward"
            casts = any(family(n.name) == "casts" for n in chain)
            return "backward", "casts" if casts else family(name)
        if name.startswith(LABEL):
            phase, _, part = name[len(LABEL) :].partition("/")
            if part:
                return phase, part
            if not chain:
                return phase, "other ops"
            casts = any(family(n.name) == "casts" for n in chain)
            return phase, "casts" if casts else family(chain[-1].name)
        chain.append(node)
        node = node.cpu_parent
    top = chain[-1].name if chain else ""
    if family(top) == "casts":  # batches moved to the device, outside the model
        return "data", "copy to device"
    return "other", family(top)


def breakdown(events: list[Any], steps: int) -> dict[str, Any]:
    """Self times summed by (phase, family), per step, in ms; syncs counted."""
    cpu: dict[tuple[str, str], float] = defaultdict(float)
    device: dict[tuple[str, str], float] = defaultdict(float)
    syncs: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith((LABEL, "ProfilerStep", "Optimizer.")):
            continue  # labels: their own time is Python's (unaccounted)
        key = classify(e)
        cpu[key] += e.self_cpu_time_total / 1000 / steps
        device[key] += getattr(e, "self_device_time_total", 0) / 1000 / steps
        if e.name in SYNCS:
            syncs[key[0]] += 1 / steps
    return {
        "cpu_ms": {f"{p}|{f}": v for (p, f), v in cpu.items()},
        "device_ms": {f"{p}|{f}": v for (p, f), v in device.items() if v},
        "syncs_per_step": dict(syncs),
    }


def measure(file: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """Profile ``steps`` training steps of the experiment; the breakdown as plain data."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tel_core import ui
    from tel_core.registry.registry import default_registry
    from tel_core.train.experiment import load_experiment
    from tel_core.train.loop import Trainer

    ui.console.quiet = True
    experiment = load_experiment(
        file, [*overrides, f"train.max_steps={warmup + steps}", "loggers=[]"]
    )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(experiment, Path(run_dir), default_registry())
        cuda = trainer.device.type == "cuda"

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(trainer.device)

        for step in range(1, warmup + 1):
            trainer.train_step(step)
        sync()
        # Unprofiled timing first: the profiler's own overhead is not the step's.
        started = time.perf_counter()
        tokens = 0
        for step in range(warmup + 1, warmup + steps + 1):
            tokens += trainer.train_step(step).tokens
        sync()
        wall = (time.perf_counter() - started) / steps
        label(trainer)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            started = time.perf_counter()
            for step in range(warmup + steps + 1, warmup + 2 * steps + 1):
                trainer.train_step(step)
            sync()
            profiled = (time.perf_counter() - started) / steps
        result = breakdown(list(prof.events()), steps)
        return {
            **result,
            "step_ms": 1000 * wall,
            "profiled_step_ms": 1000 * profiled,
            "tokens_per_s": tokens / (wall * steps),
            "precision": trainer.precision.name,
            "device": str(trainer.device),
            "threads": torch.get_num_threads(),
            "parameters": trainer.model.num_parameters(),
        }


def summarise(result: dict[str, Any]) -> dict[str, float]:
    """Rows of the table: phase totals and (phase, family) lines, in ms per step."""
    times = result["device_ms"] or result["cpu_ms"]
    rows: dict[str, float] = {}
    for phase in PHASES:
        mine = {k: v for k, v in times.items() if k.split("|")[0] == phase}
        if not mine:
            continue
        rows[phase] = sum(mine.values())
        for key, value in sorted(mine.items(), key=lambda kv: -kv[1]):
            rows[key] = value
    accounted = sum(times.values())
    rows["unaccounted"] = max(0.0, result["profiled_step_ms"] - accounted)
    return rows


def table(results: list[tuple[str, dict[str, Any]]]) -> str:
    """One column pair (ms per step, share) per result, one row per phase and family."""
    summaries = [summarise(r) for _, r in results]
    keys: list[str] = []
    for phase in (*PHASES, "unaccounted"):
        phase_keys = [k for s in summaries for k in s if k == phase or k.startswith(phase + "|")]
        for k in dict.fromkeys(
            sorted(phase_keys, key=lambda k: (k != phase, -max(s.get(k, 0) for s in summaries)))
        ):
            keys.append(k)
    header = ["", *[f"{name} ms" for name, _ in results], *[f"{name} %" for name, _ in results]]
    rows = [header]
    for k in keys:
        name = k if "|" not in k else "    " + k.split("|")[1]
        values = [s.get(k, 0.0) for s in summaries]
        if "|" in k and max(values) < 0.05:
            continue
        shares = [
            100 * v / r["profiled_step_ms"] if r["profiled_step_ms"] else 0.0
            for v, (_, r) in zip(values, results, strict=True)
        ]
        rows.append([name, *[f"{v:,.1f}" for v in values], *[f"{p:.1f}" for p in shares]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in rows
    ]
    return "\n".join(lines)


def facts(name: str, r: dict[str, Any]) -> str:
    what = "device time" if r["device_ms"] else "CPU time"
    syncs = ", ".join(f"{n:g} in {phase}" for phase, n in r["syncs_per_step"].items()) or "none"
    return (
        f"{name}: {r['parameters']:,} parameters, {r['precision']} on {r['device']} "
        f"({r['threads']} threads): {r['step_ms']:,.1f} ms/step unprofiled "
        f"({r['tokens_per_s']:,.0f} tokens/s), {r['profiled_step_ms']:,.1f} ms profiled; "
        f"host syncs (.item()) per step: {syncs}; times are the operators' {what}"
    )


def run_before(rev: str, argv: list[str]) -> dict[str, Any]:
    """This profile, run in a fresh process on the tel of git revision ``rev``."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        archive = subprocess.run(
            ["git", "archive", rev, "tel_core", "plugins"], cwd=ROOT, capture_output=True
        )
        if archive.returncode:
            raise SystemExit(f"profile: git archive {rev}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        # The plugins install as tel_plugins: an import path that names them so. The
        # entry points (this checkout's) then load the old revision's modules.
        (source / "plugins").rename(source / "tel_plugins")
        out = Path(tmp) / "before.json"
        env = {**os.environ, "PYTHONPATH": str(source)}
        subprocess.run(
            [sys.executable, __file__, *argv, "--json", str(out), "--quiet"], env=env, check=True
        )
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="the experiment, e.g. experiments/baseline.toml")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--before", metavar="REV", help="also profile tel at this git revision")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    from tel_core.errors import TelError

    results = []
    if args.before:
        rest = [args.file, f"--steps={args.steps}", f"--warmup={args.warmup}"]
        rest += [f"--set={s}" for s in args.overrides]
        results.append((args.before, run_before(args.before, rest)))
    try:
        results.append(
            (
                "now" if args.before else "time",
                measure(args.file, args.overrides, args.steps, args.warmup),
            )
        )
    except TelError as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(results[-1][1], indent=2) + "\n")
    if args.quiet:
        return 0
    for name, r in results:
        print(facts(f"{args.file} [{name}]", r))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
