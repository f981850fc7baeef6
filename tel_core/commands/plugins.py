"""`tel plugins`: every registered component, by kind."""

from __future__ import annotations

import argparse
import json

from tel_core.errors import TelError


def add_parser(commands: argparse._SubParsersAction) -> None:
    plugins = commands.add_parser(
        "plugins",
        help="list every registered component, by kind",
        description="List every registered component, by kind, with the distribution that "
        "provides it and its options; plugins that failed to load are listed with their error.",
    )
    plugins.add_argument("--kind", help="only this kind (dataset, attention, ...)")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=_plugins)
    show = plugins.add_subparsers(dest="plugins_command", metavar="show").add_parser(
        "show",
        help="one component in full: docs, source, options, and how to select it",
        description="One component in full: its docs, source, options with types, defaults "
        "and docs, and the experiment-file table that selects it.",
    )
    show.add_argument("kind", help="dataset, tokenizer, attention, positional, norm, ...")
    show.add_argument("name", help="the component's registered name, e.g. rope")
    # SUPPRESS: an absent --json here must not undo `tel plugins --json show ...`.
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


def _plugins(args: argparse.Namespace) -> int:
    from tel_core.config import listing
    from tel_core.registry.registry import KINDS, Registry, disabled_plugins, strict_plugins

    # Loaded leniently even under TEL_STRICT_PLUGINS=1: list everything, then fail.
    registry = Registry()
    registry.load_entry_points(strict=False, disabled=disabled_plugins())
    if args.plugins_command == "show":
        if args.kind not in KINDS:
            raise TelError(f"unknown kind {args.kind!r}; kinds: {', '.join(KINDS)}")
        info = listing.component_info(registry.get(args.kind, args.name))
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            listing.print_component(info)
        return 0
    kinds = list(KINDS)
    if args.kind:
        if args.kind not in KINDS:
            raise TelError(f"unknown kind {args.kind!r}; kinds: {', '.join(KINDS)}")
        kinds = [args.kind]
    data = listing.listing(registry, kinds)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        listing.print_listing(data)
    if strict_plugins() and (problems := listing.problems(data)):
        more = f" ({len(problems)} problems, listed above)" if len(problems) > 1 else ""
        raise TelError(f"TEL_STRICT_PLUGINS=1: {problems[0]}{more}")
    return 0
