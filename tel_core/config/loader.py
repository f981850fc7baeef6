"""Reading experiment files: TOML, ``extends``, ``--set`` overrides, and structuring.

An experiment is built from layers, lowest first: the files reached through ``extends``,
the file itself, then the ``--set`` overrides. Layers are deep-merged. Each error names
the layer (file, or ``--set`` item) that supplied the offending key, the table, the key,
and what would be valid. Constraints that span keys (``n_kv_heads`` must divide
``n_heads``) are the model components' ``check`` functions, run once the whole
experiment is read (the ``check`` that ``tel_core.train.experiment`` hands to
``structure``) and reported against the component's table.
"""

from __future__ import annotations

import collections.abc
import difflib
import functools
import math
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs

from tel_core.config.schema import Experiment, Selection
from tel_core.errors import ConfigError
from tel_core.registry.registry import Component, Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

KeyPath = tuple[str, ...]


@attrs.frozen
class Layer:
    label: str  # a file path, or "--set KEY=VALUE"
    data: dict[str, Any]


# -- reading layers ------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{_show(path)}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{_show(path)}: is a directory, not an experiment file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_show(path)}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{_show(path)}: not UTF-8 text: {exc}") from None


def file_layers(path: Path, _chain: tuple[Path, ...] = ()) -> list[Layer]:
    """The layers of ``path``: its ``extends`` ancestors first, then the file itself."""
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(_show(p) for p in (*_chain, resolved))
        raise ConfigError(f"{_show(path)}: extends forms a cycle: {cycle}")
    data = read_toml(path)
    parent = data.pop("extends", None)
    layers = []
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{_show(path)}: extends must be a path string, got {parent!r}")
        parent_path = path.parent / parent  # relative to the file, not the working directory
        if parent_path.is_dir():
            raise ConfigError(
                f"{_show(path)}: extends = {parent!r}, a directory; name an experiment file"
            )
        if not parent_path.is_file():
            raise ConfigError(
                f"{_show(path)}: extends = {parent!r}, but {_show(parent_path)} does not exist"
            )
        layers = file_layers(parent_path, (*_chain, resolved))
    return [*layers, Layer(_show(path), data)]


def override_layers(overrides: Iterable[str]) -> list[Layer]:
    """One layer per ``--set KEY=VALUE``; VALUE is TOML where it parses, else a string."""
    layers = []
    for item in overrides:
        key, sep, text = item.partition("=")
        keys = tuple(k.strip() for k in key.split("."))
        if not sep or not all(keys):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.max_steps=200")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        data: dict[str, Any] = {keys[-1]: value}
        for k in reversed(keys[:-1]):
            data = {k: data}
        layers.append(Layer(f"--set {item}", data))
    return layers


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (neither is modified).

    A nested table that names a different component (its ``name`` changes) replaces the
    inherited table whole: the old component's options mean nothing to the new one. (The
    top-level ``name`` is the experiment's, and changing it replaces nothing.)
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, str) and "name" not in value:
            old = {"name": old}  # `positional = "rope"` shorthand, then its options
        if isinstance(value, dict) and isinstance(old, dict):
            renamed = "name" in old and "name" in value and old["name"] != value["name"]
            merged[key] = dict(value) if renamed else merge(old, value)
        else:
            merged[key] = value
    return merged


# -- structuring -----------------------------------------------------------------


def _strict(expected: type, accepts: tuple[type, ...]) -> Any:
    def structure(value: Any, _: type) -> Any:
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, accepts):
            raise TypeError(f"expected {expected.__name__}, got {value!r}")
        return expected(value)

    return structure


def _finite(structure: Any) -> Any:
    """TOML has inf and nan; no option means them, and they surface later as a NaN loss."""

    def finite(value: Any, type_: type) -> Any:
        number = structure(value, type_)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {value!r}")
        return number

    return finite


def _structure_literal(value: Any, type_: Any) -> Any:
    allowed = typing.get_args(type_)
    # ``1 == True`` in Python, but a TOML integer is not a TOML boolean.
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise ValueError(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _type_label(type_: Any) -> str:
    return type_.__name__ if isinstance(type_, type) else str(type_).replace("typing.", "")


def _is_array(type_: Any) -> bool:
    return typing.get_origin(type_) in (list, tuple, collections.abc.Sequence) or type_ in (
        list,
        tuple,
    )


def _structure_array(value: Any, type_: Any) -> Any:
    """A TOML array into a list or tuple: never a string taken apart character by character."""
    label = _type_label(type_)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected an array ({label}), got {value!r}")
    args = typing.get_args(type_)
    if typing.get_origin(type_) is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ValueError(f"expected {len(args)} values ({label}), got {list(value)!r}")
        types = list(args)
    else:
        types = [args[0] if args else Any] * len(value)
    items = []
    for i, (item, item_type) in enumerate(zip(value, types, strict=True)):
        try:
            items.append(item if item_type is Any else _converter.structure(item, item_type))
        except Exception as exc:
            raise ValueError(f"item {i}: {_first_leaf(exc)}") from None
    return tuple(items) if (typing.get_origin(type_) or type_) is tuple else items


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    # cattrs would call int("3.5") or bool("no"); an experiment file deserves better.
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _finite(_strict(float, (int, float))))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook_func(
        lambda t: typing.get_origin(t) is typing.Literal, _structure_literal
    )
    converter.register_structure_hook_func(_is_array, _structure_array)
    return converter


_converter = _make_converter()


@functools.cache
def _fields(cls: type) -> dict[str, attrs.Attribute]:
    attrs.resolve_types(cls)
    return attrs.fields_dict(cls)


def _first_leaf(exc: BaseException) -> BaseException:
    """The innermost error of a cattrs exception group: the one that says what is wrong."""
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]
    return exc


def _rejected_key(
    fields: dict[str, attrs.Attribute], values: dict[str, Any], exc: BaseException
) -> str | None:
    """The field whose validator raised ``exc`` when the class was built from ``values``:
    each validator is run again on its own value, and the one that raises the same error
    is the culprit. None when none does (``__attrs_post_init__``, a check across keys)."""
    for name, field in fields.items():
        if field.validator is None:
            continue
        if name in values:
            value = values[name]
        elif isinstance(field.default, attrs.Factory) and not field.default.takes_self:
            value = field.default.factory()
        elif field.default is not attrs.NOTHING:
            value = field.default
        else:
            continue
        try:
            field.validator(None, field, value)
        except Exception as again:  # a validator that needs the instance: not this one
            if type(again) is type(exc) and str(again) == str(exc):
                return name
    return None


class _Structurer:
    """Turns merged TOML data into an ``Experiment``, one table at a time."""

    def __init__(self, layers: Sequence[Layer], registry: Registry) -> None:
        self.layers = layers
        self.registry = registry

    def origin(self, path: KeyPath, given: bool = True) -> str:
        """The label of the last layer that set ``path`` or anything under it.

        For a key that no layer gives (``given`` false), the file that should: the one
        that set its table, else the experiment file itself.
        """
        if not given:
            table = self.origin(path[:-1]) if path[:-1] else None
            files = [layer.label for layer in self.layers if not layer.label.startswith("--set")]
            return table if table and not table.startswith("--set") else (files or [table])[-1]
        for layer in reversed(self.layers):
            node: Any = layer.data
            for key in path:
                if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                elif isinstance(node, dict) and key in node:
                    node = node[key]
                else:
                    break
            else:
                return layer.label
        return self.layers[-1].label

    def where(self, table: KeyPath, key: str | None = None, given: bool = True) -> str:
        origin = self.origin((*table, key) if key else table, given)
        name = f"[{'.'.join(table)}]" if table else "(top level)"
        return f"{origin} {name} {key}" if key else f"{origin} {name}"

    def table(self, cls: type, data: Any, path: KeyPath, owner: str = "") -> Any:
        if not isinstance(data, dict):
            raise ConfigError(f"{self.where(path)}: expected a table, got {data!r}")
        fields = _fields(cls)
        for key in data:
            if key not in fields:
                self._unknown_key(key, fields, path, owner)
        values: dict[str, Any] = {}
        for name, field in fields.items():
            kind = field.metadata.get("kind")
            if kind and field.metadata.get("many"):
                default = [{"name": n} for n in field.metadata["default_names"]]
                items = data.get(name, default)
                if not isinstance(items, list):
                    raise ConfigError(
                        f"{self.where(path, name)}: expected an array of tables, [[{name}]] in "
                        f"a file; --set replaces it whole: --set '{name}=[{{name = \"...\"}}]'"
                    )
                values[name] = tuple(
                    self.select(kind, item, (*path, name, str(i))) for i, item in enumerate(items)
                )
            elif kind:
                raw = data.get(name, {})
                if isinstance(raw, dict) and "name" not in raw:  # options for the default
                    raw = {"name": field.metadata["default_name"], **raw}
                values[name] = self.select(kind, raw, (*path, name))
            elif attrs.has(field.type):
                values[name] = self.table(field.type, data.get(name, {}), (*path, name))
            elif name in data:
                values[name] = self.value(field.type, data[name], path, name)
        for name, field in fields.items():
            if name not in values and field.default is attrs.NOTHING:
                who = owner or "the experiment"
                raise ConfigError(
                    f"{self.where(path, name, given=False)}: missing, and {who} requires it "
                    f"({_type_label(field.type)})"
                )
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:
            what = f" ({owner})" if owner else ""
            # A validator's message names the key only if its author wrote it in: say
            # which key it is whatever the message (a check across keys names none).
            key = _rejected_key(fields, values, exc)
            at = self.where(path, key, given=key in data) if key else self.where(path)
            raise ConfigError(f"{at}{what}: {exc}") from None

    def value(self, type_: Any, raw: Any, table: KeyPath, key: str) -> Any:
        try:
            return _converter.structure(raw, type_)
        except Exception as exc:
            raise ConfigError(f"{self.where(table, key)}: {_first_leaf(exc)}") from None

    def select(self, kind: str, raw: Any, path: KeyPath) -> Selection:
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            available = ", ".join(sorted(self.registry.components(kind)))
            raise ConfigError(
                f'{self.where(path)}: expected name = "<{kind}>"; available: {available}'
            )
        component = self.registry.get(kind, raw["name"], where=self.where(path))
        options = {k: v for k, v in raw.items() if k != "name"}
        owner = f"{kind} {component.name!r}"
        return Selection(component.name, self.table(component.options, options, path, owner))

    def _unknown_key(
        self, key: str, fields: dict[str, attrs.Attribute], path: KeyPath, owner: str
    ) -> None:
        valid = sorted(fields) + (["name"] if owner else [])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        of = f" for {owner}" if owner else ""
        raise ConfigError(
            f"{self.where(path, key)}: unknown key{of}{hint} "
            f"valid keys: {', '.join(valid) or '(none)'}"
        )


#: Where a key is set, for error messages: ``where(("model", "attention"))`` gives
#: ``"x.toml [model.attention]"``, naming the layer (file or --set) that set it.
Where = Callable[[KeyPath], str]
#: Checks that run once the whole experiment is read: ``check(experiment, registry, where)``.
Check = Callable[[Experiment, Registry, Where], None]


def structure(
    layers: Sequence[Layer], registry: Registry, check: Check | None = None
) -> Experiment:
    """Merge ``layers`` and structure the result into an ``Experiment``.

    ``check`` then judges what spans tables (the model components' and probes' checks,
    ``tel_core.train.experiment.check_experiment``), locating its errors with ``where``.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, layer.data)
    structurer = _Structurer(layers, registry)
    experiment = structurer.table(Experiment, merged, ())
    if check is not None:
        check(experiment, registry, structurer.where)
    return experiment


def options_from_dict(component: Component, data: dict[str, Any], label: str = "options") -> Any:
    """A component's options from plain data, checked exactly like its table in a TOML file."""
    owner = f"{component.kind} {component.name!r}"
    # An options class selects no components, so an empty registry is all it needs.
    return _Structurer([Layer(label, data)], Registry()).table(component.options, data, (), owner)


def _show(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
