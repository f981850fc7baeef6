"""Options the loader accepts, the built-in factories accept: a bad value is one clear line.

An option combination that passes the options class but makes a factory raise (say a
torch ValueError) would surface as a traceback in the middle of `tel run`. Hypothesis
draws option tables for every built-in model, optimizer, schedule and tokenizer, keeps
those the loader (and, for model components, their ``check``) accepts, and builds the
component from each.
"""

from __future__ import annotations

import contextlib
import types
import typing
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tel_core.config.loader import options_from_dict
from tel_core.errors import TelError
from tel_core.registry.interfaces import ParameterGroups, ScheduleContext
from tel_core.testing import model_context

from .conftest import builtin_components

# Small, edge-heavy values: large enough to hit every validator, small enough to build.
FLOATS = st.sampled_from([-1.0, 0.0, 1e-8, 0.5, 0.999, 1.0, 2.0, 1e4])
# Large ones too: some options have floors far above 6 (a BPE vocabulary holds 256 bytes).
INTS = st.one_of(st.integers(-2, 6), st.sampled_from([64, 257, 4096]))
BUILT = ("tokenizer", "attention", "positional", "norm", "ffn", "optimizer", "schedule")


def strategy(annotation: Any) -> st.SearchStrategy:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is float:
        return FLOATS
    if annotation is int:
        return INTS
    if annotation is bool:
        return st.booleans()
    if annotation is str:
        return st.text(max_size=4)
    if origin is typing.Literal:
        return st.sampled_from([*args, "other"])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else strategy(a) for a in args))
    if origin is tuple:
        return st.tuples(*map(strategy, args))
    if origin is list:
        return st.lists(strategy(args[0]), max_size=3)
    raise NotImplementedError(f"no strategy for options of type {annotation!r}")


def tables(options: type) -> st.SearchStrategy[dict[str, Any]]:
    fields = attrs.fields(attrs.resolve_types(options))
    return st.fixed_dictionaries({}, optional={f.name: strategy(f.type) for f in fields})


def build(kind: str, factory: Any, options: Any) -> None:
    if kind == "tokenizer":
        factory(options)
    elif kind == "norm":
        factory(options, 32)
    elif kind == "optimizer":
        layer = nn.Linear(4, 4)
        factory(options, ParameterGroups([layer.weight], [], [layer.bias]), 1e-3)
    elif kind == "schedule":
        factory(options, ScheduleContext(1e-3, 10))(0)
    else:
        factory(options, model_context())


@pytest.mark.parametrize(("kind", "name"), builtin_components(tuple(BUILT)))
def test_accepted_options_build(registry, kind, name):
    component = registry.get(kind, name)
    accepted: list[dict[str, Any]] = []

    @settings(max_examples=60, derandomize=True, deadline=None, database=None)
    @given(table=tables(component.options))
    def accepted_tables_build(table: dict[str, Any]) -> None:
        try:
            options = options_from_dict(component, table)
            if component.check is not None:  # what the loader runs for model components
                component.check(options, model_context())
        except (TelError, ValueError):
            return  # rejected with one clear line: what should happen
        accepted.append(table)
        with contextlib.suppress(TelError):  # a one-line error from the factory is fine too
            build(kind, component.factory, options)

    accepted_tables_build()
    # Not vacuous: every option was set, to a value the loader accepted, in some table
    # that was then built (a strategy that only ever drew rejected values proves nothing).
    fields = {f.name for f in attrs.fields(component.options)}
    exercised = {key for table in accepted for key in table}
    assert fields <= exercised, (
        f"{kind} {name!r}: no accepted table set {sorted(fields - exercised)} "
        f"({len(accepted)} of the draws were accepted)"
    )
    assert accepted, f"{kind} {name!r}: every drawn table was rejected"
