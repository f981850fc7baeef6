"""What `tel plugins` reports, in process: tables, TOML snippets, run-time plugins."""

from __future__ import annotations

import sys

import attrs
import pytest

from tel_core import hookimpl
from tel_core.config.listing import component_info, component_tables, listing, toml_example
from tel_core.config.loader import merge
from tel_core.registry.registry import KINDS, first_sentence
from tel_core.train.experiment import experiment_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_every_kind_has_a_table_in_the_experiment_file():
    assert component_tables() == {
        "dataset": ("data.dataset", False),
        "tokenizer": ("data.tokenizer", False),
        "attention": ("model.attention", False),
        "positional": ("model.positional", False),
        "norm": ("model.norm", False),
        "ffn": ("model.ffn", False),
        "optimizer": ("optimizer", False),
        "schedule": ("schedule", False),
        "logger": ("loggers", True),
        "probe": ("probes", True),
    }
    assert set(component_tables()) == set(KINDS)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_shown_table_selects_the_component_with_its_defaults(registry, kind):
    for component in registry.components(kind).values():
        table = tomllib.loads(toml_example(component))  # comments hold what TOML cannot
        experiment = experiment_from_dict(merge({"name": "x"}, table), registry)
        path = component_tables()[kind][0].split(".")
        selected = experiment
        for key in path:
            selected = getattr(selected, key)
        selected = selected[0] if isinstance(selected, tuple) else selected
        assert selected.name == component.name
        assert selected.options == component.options()


@pytest.mark.parametrize("kind", list(KINDS))
def test_only_options_without_a_value_are_commented_out(registry, kind):
    """A default that TOML can write (an array such as AdamW's betas) is written, on one
    line; a comment says why an option is left out (not set by default)."""
    for component in registry.components(kind).values():
        for line in toml_example(component).splitlines():
            assert not line.startswith("#") or line.endswith("not set by default)"), line
            assert "= [" not in line or line.endswith("]"), line


def test_a_description_is_its_first_sentence_not_its_first_line(registry):
    # `text`'s docstring wraps its first sentence onto a second line.
    assert component_info(registry.get("dataset", "text"))["doc"].endswith("the rest validates.")
    doc = """Some files, concatenated: the first 1 - val_fraction of the bytes trains, the rest
    validates (e.g. 0.1 of them). Documents are cut at separators.

    More."""
    assert first_sentence(doc) == (
        "Some files, concatenated: the first 1 - val_fraction of the bytes trains, the rest "
        "validates (e.g. 0.1 of them)."
    )
    assert first_sentence("One line, no stop") == "One line, no stop"
    assert first_sentence("Shown?\n\nNot this.") == "Shown?"


@attrs.frozen
class _Options:
    #: How many.
    count: int
    scale: float = 0.5


class _RuntimePlugin:
    @hookimpl
    def register_ffn(self, register):
        register("runtime", lambda options, ctx: None, options=_Options)


def test_a_plugin_registered_at_run_time_and_a_required_option(registry):
    registry.add_plugin(_RuntimePlugin(), name="runtime-plugin")
    info = component_info(registry.get("ffn", "runtime"))
    assert info["distribution"] is None and info["plugin"] == "runtime-plugin"
    assert info["options"][0] == {
        "name": "count",
        "type": "int",
        "default": None,
        "required": True,
        "doc": "How many.",
    }
    assert info["toml"] == (
        '[model.ffn]\nname = "runtime"\ncount = ...  # required: int\nscale = 0.5'
    )
    names = [c["name"] for c in listing(registry, ["ffn"])["components"]["ffn"]]
    assert "runtime" in names and names == sorted(names)


def test_a_components_check_is_named(registry):
    info = component_info(registry.get("attention", "causal"))
    assert info["check"] == "tel_plugins.attention.multihead:check_heads"
    assert component_info(registry.get("norm", "layernorm"))["check"] is None
