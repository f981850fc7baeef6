"""Generation speed with and without the KV cache: tokens/s of greedy decoding.

    python benchmarks/generate.py                        # causal and linear, 256 and 1024 tokens
    python benchmarks/generate.py --new-tokens 64 --d-model 128 --n-layers 4   # a quick look

The model is the ~10M-parameter shape (d_model 384, 6 layers, 6 heads, block 1024,
byte-level vocabulary) with random weights: speed does not depend on what was learned.
Each case decodes greedily from the same 8-token prompt, once recomputing the whole
context for every token (``cache=False``) and once with the KV cache, and checks that
both give the same tokens. Uses CUDA when present; wall-clock times after a short
warm-up. Run it on a quiet machine: it prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tel_core.model.decoder import LanguageModel, build_model
from tel_core.model.sampling import generate
from tel_core.registry.registry import default_registry
from tel_core.train.device import resolve_device
from tel_core.train.experiment import experiment_from_dict

VOCAB = 256  # byte-level, as the baseline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", nargs="+", default=["causal", "linear"])
    parser.add_argument("--new-tokens", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--n-layers", type=int, default=6)
    parser.add_argument("--n-heads", type=int, default=6)
    parser.add_argument("--positional", default="learned")
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's; 1 on a busy machine)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def make_model(args: argparse.Namespace, attention: str, device: torch.device) -> LanguageModel:
    registry = default_registry()
    experiment = experiment_from_dict(
        {
            "name": "bench",
            "data": {"block_size": args.block_size},
            "model": {
                "d_model": args.d_model,
                "n_layers": args.n_layers,
                "n_heads": args.n_heads,
                "bias": False,
                "attention": attention,
                "positional": args.positional,
            },
            "loggers": [],
        },
        registry,
        label="benchmarks/generate.py",
    )
    torch.manual_seed(args.seed)
    return build_model(experiment.model, VOCAB, args.block_size, registry).to(device).eval()


def timed(
    model: LanguageModel, prompt: torch.Tensor, n: int, cache: bool, device: torch.device
) -> tuple[float, torch.Tensor]:
    """Seconds to decode ``n`` tokens greedily, and the tokens."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    ids = generate(model, prompt, n, temperature=0, cache=cache)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, ids


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(VOCAB, (1, args.prompt_tokens), generator=generator).to(device)
    results = []
    for attention in args.attention:
        model = make_model(args, attention, device)
        if attention == args.attention[0]:
            print(
                f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
                f"fp32; {model.num_parameters() / 1e6:.1f}M parameters (d_model {args.d_model}, "
                f"{args.n_layers} layers, {args.n_heads} heads, block {args.block_size}, "
                f"{args.positional}); greedy, batch 1, a {args.prompt_tokens}-token prompt"
            )
            print()
            print(
                "| attention | new tokens | no cache tok/s | cache tok/s | speed-up | same tokens |"
            )
            print("| --- | --- | --- | --- | --- | --- |")
        for cache in (False, True):  # warm-up: first calls allocate and pick kernels
            timed(model, prompt, 8, cache, device)
        for n in args.new_tokens:
            slow, without = timed(model, prompt, n, False, device)
            fast, with_cache = timed(model, prompt, n, True, device)
            row = {
                "attention": attention,
                "new_tokens": n,
                "no_cache_tokens_per_s": n / slow,
                "cache_tokens_per_s": n / fast,
                "speedup": slow / fast,
                "same_tokens": bool(torch.equal(without, with_cache)),
            }
            results.append(row)
            print(
                f"| `{attention}` | {n} | {row['no_cache_tokens_per_s']:,.1f} | "
                f"{row['cache_tokens_per_s']:,.1f} | {row['speedup']:.1f}x | "
                f"{'yes' if row['same_tokens'] else 'NO'} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
