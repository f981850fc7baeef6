"""What ``tel plugins`` prints: every component with its source, options and docs.

The same plain data feeds ``--json`` (for tools) and the text output (for people), so the
two never disagree.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from typing import Any

import attrs
import tomli_w

from tel_core.config.options import REQUIRED, describe_options
from tel_core.config.schema import Experiment
from tel_core.registry.registry import Component, Registry, Source
from tel_core.ui import console


@functools.cache
def component_tables() -> dict[str, tuple[str, bool]]:
    """Where an experiment file selects each kind: (dotted table, whether an array of tables)."""
    found: dict[str, tuple[str, bool]] = {}

    def walk(cls: type, prefix: str) -> None:
        for field in attrs.fields(attrs.resolve_types(cls)):
            if kind := field.metadata.get("kind"):
                found.setdefault(kind, (prefix + field.name, bool(field.metadata.get("many"))))
            elif isinstance(field.type, type) and attrs.has(field.type):
                walk(field.type, f"{prefix}{field.name}.")

    walk(Experiment, "")
    return found


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}:{getattr(obj, '__qualname__', repr(obj))}"


def _source(source: Source) -> dict[str, Any]:
    return {
        "plugin": source.plugin,
        "module": source.module,
        "distribution": source.distribution,
        "version": source.version,
    }


def component_info(component: Component) -> dict[str, Any]:
    """A component as plain data: name, docs, where it comes from, and its options."""
    return {
        "kind": component.kind,
        "name": component.name,
        "doc": component.doc,
        "description": inspect.cleandoc(component.factory.__doc__ or ""),
        **_source(component.source),
        "factory": _qualified(component.factory),
        "options_class": _qualified(component.options),
        # The check of a model component (run on the whole model before anything is
        # built) or of a probe (run on the experiment at load time).
        "check": _qualified(check) if (check := getattr(component, "check", None)) else None,
        "options": [
            {
                "name": o.name,
                "type": o.type,
                "default": None if o.required else o.default,
                "required": o.required,
                "doc": o.doc,
            }
            for o in describe_options(component.options)
        ],
        "toml": toml_example(component),
    }


def listing(registry: Registry, kinds: Iterable[str]) -> dict[str, Any]:
    """Everything ``tel plugins`` reports: components by kind, broken, disabled, conflicts."""
    conflicts = registry.conflicts
    return {
        "components": {
            kind: [
                {
                    **component_info(c),
                    # Every plugin that registers this name, when more than one does.
                    "conflict": [str(s) for s in conflicts.get((kind, c.name), [])],
                }
                for c in sorted(registry.components(kind).values(), key=lambda c: c.name)
            ]
            for kind in kinds
        },
        "broken": [
            {"plugin": b.plugin, "module": b.module, "error": b.error} for b in registry.broken
        ],
        "disabled": [_source(s) for s in registry.disabled],
        "disabled_unknown": registry.disabled_unknown,
        "conflicts": [
            {"kind": kind, "name": name, "sources": [str(s) for s in sources]}
            for (kind, name), sources in registry.conflicts.items()
        ],
    }


def problems(data: dict[str, Any]) -> list[str]:
    """What ``TEL_STRICT_PLUGINS=1`` refuses in a listing: broken plugins and name clashes."""
    found = [
        f"plugin {b['plugin']!r} ({b['module']}) failed to load: {b['error']}"
        for b in data["broken"]
    ]
    found += [
        f"{c['kind']} {c['name']!r} is registered twice: by " + " and by ".join(c["sources"])
        for c in data["conflicts"]
    ]
    return found


def toml_example(component: Component) -> str:
    """The table that selects ``component`` in an experiment file, every option at its default."""
    table, many = component_tables().get(component.kind, (component.kind, False))
    lines = [f"[[{table}]]" if many else f"[{table}]", _toml_line("name", component.name)]
    for option in describe_options(component.options):
        if option.required:
            lines.append(f"{option.name} = ...  # required: {option.type}")
        elif option.default is None:
            lines.append(f"# {option.name} = ...  ({option.type}; not set by default)")
        else:
            lines.append(_toml_line(option.name, option.default))
    return "\n".join(lines)


def _toml_line(key: str, value: Any) -> str:
    text = toml_value(value)
    # A value TOML cannot hold (an options class's own type, say) stays a comment.
    return f"{key} = {text}" if text is not None else f"# {key} = {value!r}  (not a TOML value)"


def toml_value(value: Any) -> str | None:
    """``value`` written inline, as on one line of an experiment file (arrays and tables
    too: ``[0.9, 0.95]``, ``{ name = "x" }``); None if TOML cannot hold it."""
    if isinstance(value, (list, tuple)):
        items = [toml_value(item) for item in value]
        if any(item is None for item in items):
            return None
        return "[" + ", ".join(item for item in items if item is not None) + "]"
    if isinstance(value, dict):
        pairs = [(toml_key(k), toml_value(v)) for k, v in value.items()]
        if any(v is None for _, v in pairs):
            return None
        return "{ " + ", ".join(f"{k} = {v}" for k, v in pairs) + " }" if pairs else "{}"
    try:
        return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")
    except TypeError:
        return None


def toml_key(key: Any) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    return tomli_w.dumps({str(key): 0}).strip().rsplit(" = ", 1)[0]


# -- text output -------------------------------------------------------------------


def _origin(info: dict[str, Any]) -> str:
    if info["distribution"]:
        return f"{info['distribution']} {info['version']}"
    return "not installed (registered at run time)"


def _option_head(option: dict[str, Any]) -> str:
    default = REQUIRED if option["required"] else _toml_value(option["default"])
    return f"{option['name']}: {option['type']}" + (
        f" {default}" if option["required"] else f" = {default}"
    )


def _toml_value(value: Any) -> str:
    if value is None:  # TOML has no null: the option is simply left out
        return "(not set)"
    text = toml_value(value)
    return text if text is not None else repr(value)


def print_listing(data: dict[str, Any]) -> None:
    for kind, components in data["components"].items():
        console.print(kind, style="bold", markup=False)
        if not components:
            console.print("  (none)", markup=False)
        for info in components:
            console.print(f"  {info['name']}  {_origin(info)}  {info['module']}", markup=False)
            if info.get("conflict"):
                console.print(
                    f"      CONFLICT: registered by {' and by '.join(info['conflict'])}; "
                    f"an experiment selecting {info['name']!r} fails until one is removed",
                    markup=False,
                )
            if info["doc"]:
                console.print(f"      {info['doc']}", markup=False)
            heads = [_option_head(o) for o in info["options"]]
            width = max(map(len, heads), default=0)
            for head, option in zip(heads, info["options"], strict=True):
                console.print(f"      {head:<{width}}  {option['doc']}".rstrip(), markup=False)
    for b in data["broken"]:
        console.print(f"broken plugin {b['plugin']} ({b['module']}): {b['error']}", markup=False)
    for d in data["disabled"]:
        console.print(
            f"disabled plugin {d['plugin']} ({d['module']}) by TEL_DISABLED_PLUGINS", markup=False
        )
    for name in data["disabled_unknown"]:
        console.print(
            f"TEL_DISABLED_PLUGINS names {name!r}, but no entry point has that name "
            f"(entry-point names are the plugins' names above, e.g. positional.rope)",
            markup=False,
        )
    for c in data["conflicts"]:
        console.print(
            f"conflict: {c['kind']} {c['name']!r} is registered by "
            + " and by ".join(c["sources"]),
            markup=False,
        )


def print_component(info: dict[str, Any]) -> None:
    console.print(f"{info['kind']} {info['name']}", style="bold", markup=False)
    for line in (info["description"] or "(no docstring)").splitlines():
        console.print(f"  {line}".rstrip(), markup=False)
    console.print("", markup=False)
    console.print(
        f"  from     {_origin(info)}, plugin {info['plugin']} ({info['module']})", markup=False
    )
    console.print(f"  factory  {info['factory']}", markup=False)
    if info["check"]:
        console.print(f"  check    {info['check']}", markup=False)
    console.print(f"  options  {info['options_class']}", markup=False)
    for option in info["options"]:
        console.print(f"    {_option_head(option)}", markup=False)
        if option["doc"]:
            console.print(f"        {option['doc']}", markup=False)
    if not info["options"]:
        console.print("    (none)", markup=False)
    console.print("\n  in an experiment file:", markup=False)
    for line in info["toml"].splitlines():
        console.print(f"    {line}", markup=False)
