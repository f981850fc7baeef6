"""`tel chat RUN_DIR`: an interactive loop of prompts and streamed continuations."""

from __future__ import annotations

import argparse

from tel_core.commands import add_run_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "chat",
        help="type prompts, watch a trained run's model continue them",
        description="Type a prompt, watch the continuation stream. temp X, topk K, topp P, "
        "len N and seed S change the settings; quit, exit, q or Ctrl-D leave; Ctrl-C stops "
        "a generation. Input may be piped from a file.",
    )
    add_run_arguments(parser)
    parser.add_argument("--temperature", type=float, metavar="T", help="default: the run's")
    parser.add_argument("--top-k", type=int, metavar="K", help="default: the run's")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="default: the run's")
    parser.add_argument("--seed", type=int, metavar="S", help="default: the run's seed")
    parser.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    from tel_core.use.chat import ChatSettings, chat
    from tel_core.use.generate import check_sampling
    from tel_core.use.load_run import load_run

    loaded = load_run(args.run_dir, args.checkpoint, device=args.device)
    sample = loaded.experiment.sample
    settings = ChatSettings(
        temperature=sample.temperature if args.temperature is None else args.temperature,
        top_k=sample.top_k if args.top_k is None else args.top_k,
        top_p=args.top_p,
        max_new_tokens=sample.max_new_tokens
        if args.max_new_tokens is None
        else args.max_new_tokens,
        seed=loaded.experiment.seed if args.seed is None else args.seed,
    )
    check_sampling(settings.sampling, settings.max_new_tokens)
    chat(loaded, settings)
    return 0
