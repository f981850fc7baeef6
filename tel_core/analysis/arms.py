"""Arms: runs whose resolved configs differ only in the seed, and what sets arms apart.

The keys that differ between arms are found from the configs themselves (a config diff),
or named with ``--by``. A component whose name differs between arms (``rope`` against
``alibi``) brings its own options; those are not separate differences unless they also
vary between arms that chose the same component.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import attrs

from tel_core.analysis.runs import Run
from tel_core.errors import TelError

#: Keys that do not make two runs different arms: the seed, the run's name, and the
#: loggers (which watch a run without changing it).
IGNORED = ("name", "seed", "loggers")
MISSING = object()  # a key one config has and another lacks


def arm_config(run: Run) -> dict[str, Any]:
    """The run's flat config without the keys that ``IGNORED`` names."""
    return {
        k: v
        for k, v in run.flat_config.items()
        if not any(k == i or k.startswith(i + ".") for i in IGNORED)
    }


@attrs.frozen(eq=False)
class Arm:
    label: str
    runs: tuple[Run, ...]
    keys: dict[str, Any]  # the differing keys, with this arm's values (MISSING: absent)


@attrs.frozen
class Arms:
    arms: tuple[Arm, ...]
    keys: tuple[str, ...]  # the columns: keys that set arms apart (or --by's)
    #: With --by: keys that vary between runs pooled into one arm.
    pooled: tuple[str, ...] = ()
    #: Every key that differs between arms (before collapsing component options), for
    #: the report's config diff.
    diff: tuple[str, ...] = ()


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def differing_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Keys whose values are not the same in every config, in first-seen order."""
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(config))
    return [k for k in keys if len({_freeze(c.get(k, MISSING)) for c in configs}) > 1]


def collapse(keys: Sequence[str], configs: Sequence[dict[str, Any]]) -> list[str]:
    """Drop a component's options when its ``name`` differs, unless the option also
    varies between configs that chose the same component."""
    kept = []
    names = {k[: -len(".name")] for k in keys if k.endswith(".name")}
    for key in keys:
        owner = next((n for n in names if key.startswith(n + ".") and key != n + ".name"), None)
        if owner is None:
            kept.append(key)
            continue
        by_name: dict[Any, set[Any]] = {}
        for c in configs:
            by_name.setdefault(c.get(owner + ".name"), set()).add(_freeze(c.get(key, MISSING)))
        if any(len(values) > 1 for values in by_name.values()):
            kept.append(key)
    return kept


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Column names: the last part of each key (the component for ``X.name``), or more
    of it where two keys would read alike."""
    names = {}
    for key in keys:
        parts = key.split(".")
        if parts[-1] == "name" and len(parts) > 1:
            parts = parts[:-1]
        for depth in range(1, len(parts) + 1):
            candidate = ".".join(parts[-depth:])
            clash = [k for k in keys if k != key and ".".join(k.split(".")[-depth:]) == candidate]
            if not clash:
                break
        names[key] = candidate
    return names


def show(value: Any) -> str:
    """A config value as a column shows it."""
    if value is MISSING:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def resolve_key(key: str, available: Sequence[str]) -> str:
    """A key as typed (``lr``, ``optimizer.lr``, ``positional``) to a dotted config key."""
    for candidate in (key, key + ".name"):
        if candidate in available:
            return candidate
    matches = [k for k in available if k.endswith("." + key) or k.endswith("." + key + ".name")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise TelError(f"--by {key}: ambiguous, it could be {', '.join(matches)}")
    close = difflib.get_close_matches(key, available, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else " (give a dotted key: optimizer.lr)"
    raise TelError(f"--by {key}: no such config key in these runs{hint}")


def group_arms(runs: Sequence[Run], by: Sequence[str] = ()) -> Arms:
    """Runs into arms, in the order their first runs come (the first arm is the baseline).

    Without ``by``: one arm per resolved config (seed, name and loggers aside). With
    ``by``: one arm per combination of those keys' values, pooling whatever else differs.
    """
    if not runs:
        raise TelError("no runs to compare")
    configs = [arm_config(r) for r in runs]
    all_keys = list(dict.fromkeys(k for c in configs for k in c))
    if by:
        group_keys = [resolve_key(k, all_keys) for k in by]
        identity = [tuple(_freeze(c.get(k, MISSING)) for k in group_keys) for c in configs]
    else:
        identity = [tuple(sorted((k, _freeze(v)) for k, v in c.items())) for c in configs]
    groups: dict[Any, list[int]] = {}
    for i, ident in enumerate(identity):
        groups.setdefault(ident, []).append(i)
    first_configs = [configs[members[0]] for members in groups.values()]
    diff = differing_keys(first_configs)
    keys = group_keys if by else collapse(diff, first_configs)
    pooled: list[str] = []
    if by:
        for members in groups.values():
            pooled += [k for k in differing_keys([configs[i] for i in members]) if k not in pooled]
    names = short_names(keys)
    arms = []
    for members in groups.values():
        arm_runs = tuple(runs[i] for i in members)
        values = {k: configs[members[0]].get(k, MISSING) for k in keys}
        member_names = {r.member for r in arm_runs}
        if not by and len(member_names) == 1 and None not in member_names:
            label = member_names.pop()
        elif keys:
            label = ",".join(f"{names[k]}={show(v)}" for k, v in values.items())
        else:
            label = arm_runs[0].name
        arms.append(Arm(label, arm_runs, values))
    labels = [a.label for a in arms]
    if len(set(labels)) < len(labels):  # two members of one config, say: tell them apart
        arms = [attrs.evolve(a, label=f"{a.label}#{i + 1}") for i, a in enumerate(arms)]
    return Arms(tuple(arms), tuple(keys), tuple(pooled), tuple(diff))
