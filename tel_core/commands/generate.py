"""`tel generate RUN_DIR --prompt TEXT`: continue a prompt, streaming the tokens."""

from __future__ import annotations

import argparse
import sys

from tel_core.commands import add_run_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "generate",
        help="continue a prompt with a trained run's model (KV cache, streaming)",
        description="Continue a prompt with a trained run's model; the text streams to "
        "standard output as it is generated. Defaults come from the run's [sample] table.",
    )
    add_run_arguments(parser)
    parser.add_argument("--prompt", help="the text to continue (default: the run's sample.prompt)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N")
    parser.add_argument(
        "--temperature", type=float, metavar="T", help="0 = greedy (default: the run's)"
    )
    parser.add_argument(
        "--top-k", type=int, metavar="K", help="0 = no cut-off (default: the run's)"
    )
    parser.add_argument(
        "--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling (default: 1, off)"
    )
    parser.add_argument("--num-samples", type=int, default=1, metavar="N")
    parser.add_argument("--seed", type=int, metavar="S", help="default: the run's seed")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole context for every token instead of using the KV cache",
    )
    parser.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    import torch

    from tel_core.errors import TelError
    from tel_core.model.sampling import Sampling
    from tel_core.use.generate import check_sampling, generate_text, prompt_ids
    from tel_core.use.load_run import load_run

    loaded = load_run(args.run_dir, args.checkpoint, device=args.device)
    sample = loaded.experiment.sample
    prompt = sample.prompt if args.prompt is None else args.prompt
    sampling = Sampling(
        sample.temperature if args.temperature is None else args.temperature,
        sample.top_k if args.top_k is None else args.top_k,
        args.top_p,
    )
    new_tokens = sample.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    check_sampling(sampling, new_tokens)
    if args.num_samples < 1:
        raise TelError(f"--num-samples must be at least 1, got {args.num_samples}")
    prompt_ids(loaded, prompt)  # a prompt the tokenizer refuses fails before anything prints
    seed = loaded.experiment.seed if args.seed is None else args.seed
    generator = torch.Generator(device=loaded.device).manual_seed(seed)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    for i in range(args.num_samples):
        if args.num_samples > 1:
            write(f"{'' if i == 0 else chr(10)}--- sample {i + 1} of {args.num_samples}\n")
        write(prompt)
        generate_text(
            loaded, prompt, new_tokens, sampling, generator, cache=not args.no_cache, write=write
        )
    write("\n")
    return 0
