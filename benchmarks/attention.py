"""Training throughput of attention variants: tokens/s of forward + backward + AdamW steps.

    python benchmarks/attention.py                      # causal, eager, linear at T = 256, 1024
    python benchmarks/attention.py --steps 2 --warmup 1 --tokens-per-step 2048   # a quick look

Every variant trains the same model (the baseline's shape unless told otherwise) on random
tokens, with the same number of tokens per step at every block size (batch = tokens per
step / block size), so a column compares like with like. Ratios are against the first
variant at the same block size. Uses CUDA when present; times are wall-clock, after
warm-up steps, with the device synchronised. Run it on a quiet machine: it prints
numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tel_core.model.decoder import build_model, parameter_groups
from tel_core.registry.registry import default_registry
from tel_core.train.device import resolve_device
from tel_core.train.experiment import experiment_from_dict

VOCAB = 256  # byte-level, as the baseline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", nargs="+", default=["causal", "eager", "linear"])
    parser.add_argument("--block-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--tokens-per-step", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds over all variants; the median counts"
    )
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def training_step(
    args: argparse.Namespace, attention: str, block_size: int
) -> tuple[Callable[[], None], int]:
    """A closure running one training step of a fresh model, and its tokens per step."""
    registry = default_registry()
    experiment = experiment_from_dict(
        {
            "name": "bench",
            "data": {"block_size": block_size},
            "model": {
                "d_model": args.d_model,
                "n_layers": args.n_layers,
                "n_heads": args.n_heads,
                "bias": False,
                "attention": attention,
            },
        },
        registry,
        label="benchmarks/attention.py",
    )
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(experiment.model, VOCAB, block_size, registry).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model).with_weight_decay(0.1), lr=1e-3)
    batch = max(1, args.tokens_per_step // block_size)
    idx = torch.randint(VOCAB, (batch, block_size + 1), device=device)
    x, y = idx[:, :-1], idx[:, 1:]

    def step() -> None:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, batch * block_size


def seconds(step: Callable[[], None], n: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    started = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; "
        f"d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads; "
        f"{args.tokens_per_step} tokens per step; {args.warmup} warm-up steps, then the "
        f"median of {args.repeats} rounds of {args.steps} timed steps"
    )
    cases = [(a, t) for t in args.block_sizes for a in args.attention]
    steps = {case: training_step(args, *case) for case in cases}
    for step, _ in steps.values():
        seconds(step, args.warmup, device)
    # Rounds over every case, rather than one case after another, so that a slow spell of
    # a shared machine spreads over all of them; the median round counts.
    rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case, (step, tokens) in steps.items():
            rates[case].append(args.steps * tokens / seconds(step, args.steps, device))

    header = f"{'attention':<10} {'block':>6} {'batch':>6} {'tokens/s':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for block_size in args.block_sizes:
        reference = statistics.median(rates[args.attention[0], block_size])
        for attention in args.attention:
            rate = statistics.median(rates[attention, block_size])
            batch = steps[attention, block_size][1] // block_size
            print(
                f"{attention:<10} {block_size:>6} {batch:>6} {rate:>12,.0f} "
                f"{rate / reference:>6.2f}x"
            )


if __name__ == "__main__":
    main()
