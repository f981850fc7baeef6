"""Which kernels a training step runs: the attention kernels above all.

    python benchmarks/gpu_kernels.py experiments/baseline.toml --set train.device=cuda \\
        --set model.n_layers=12 --set model.d_model=768 --set train.precision=bf16

It builds the experiment's real ``Trainer``, takes ``--warmup`` steps, profiles ``--steps``
more with torch.profiler and prints the kernels (device time on CUDA, CPU time on a CPU)
that took the most time, then one line naming the attention kernels it saw:

    attention kernels: flash (pytorch_flash::flash_fwd_kernel, ...) 12.3% of the step

(``flash``, ``efficient``/``fmha`` or ``cudnn``: a fused scaled-dot-product attention;
``unfused``: softmax and matmuls). ``benchmarks/gpu_check.sh`` requires a fused one on a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from tel_core import ui
from tel_core.registry.registry import default_registry
from tel_core.train.experiment import load_experiment
from tel_core.train.loop import Trainer

#: Words in a kernel's (or op's) name that say which attention ran, most specific first.
ATTENTION = (
    ("flash", "flash"),
    ("fmha", "efficient"),
    ("efficient_attention", "efficient"),
    ("cudnn", "cudnn"),
    ("sdpa", "cudnn"),
    ("scaled_dot_product", "sdpa (cpu)"),
)


def kind_of(name: str) -> str | None:
    low = name.lower()
    for word, kind in ATTENTION:
        if word in low:
            return kind
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)

    ui.console.quiet = True
    total = args.warmup + args.steps
    experiment = load_experiment(
        args.experiment, [*args.overrides, f"train.max_steps={total}", "loggers=[]"]
    )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(experiment, Path(run_dir), default_registry())
        cuda = trainer.device.type == "cuda"
        for step in range(1, args.warmup + 1):
            trainer.train_step(step)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for step in range(args.warmup + 1, total + 1):
                trainer.train_step(step)
            if cuda:
                torch.cuda.synchronize()
        trainer.close()

    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if cuda:
            us = event.device_time_total if event.device_type.name == "CUDA" else 0.0
        else:  # a CPU has no kernels: the aten ops' own time stands for them
            us = event.self_cpu_time_total if event.key.startswith("aten::") else 0.0
        if us:
            times[event.key] += us / args.steps
    whole = sum(times.values()) or 1.0
    print(f"{'kernel':90s} {'ms/step':>9s} {'share':>6s}")
    for name, us in sorted(times.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{name[:90]:90s} {us / 1000:9.3f} {100 * us / whole:5.1f}%")
    seen: dict[str, list[str]] = defaultdict(list)
    share = 0.0
    for name, us in times.items():
        kind = kind_of(name)
        if kind:
            seen[kind].append(name)
            share += us
    if seen:
        described = "; ".join(
            f"{kind} ({', '.join(sorted(names)[:2])[:100]})" for kind, names in seen.items()
        )
        print(f"attention kernels: {described} {100 * share / whole:.1f}% of the step")
    else:
        print("attention kernels: unfused (no scaled-dot-product kernel seen)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
