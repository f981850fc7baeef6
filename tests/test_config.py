"""Experiment files: structure, unknown keys, types, extends, --set, resolved config."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from tel_core import hookimpl
from tel_core.config.loader import merge
from tel_core.config.serialise import dump_toml, to_dict
from tel_core.errors import ConfigError
from tel_core.train.experiment import experiment_from_dict, load_experiment

from .conftest import EXPERIMENTS


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_minimal_file_gets_every_default(tmp_path, registry):
    exp = load_experiment(write(tmp_path / "x.toml", 'name = "x"\n'), registry=registry)
    assert exp.model.attention.name == "causal"
    assert exp.model.positional.name == "learned"
    assert exp.data.dataset.name == "stdlib"
    assert [sel.name for sel in exp.loggers] == ["console"]
    assert exp.optimizer.options.lr == 1e-3


def test_rope_and_sinusoidal_differ_only_in_the_positional_encoding(registry):
    rope = to_dict(load_experiment(EXPERIMENTS / "rope.toml", registry=registry))
    sinusoidal = to_dict(load_experiment(EXPERIMENTS / "sinusoidal.toml", registry=registry))
    assert rope["model"].pop("positional")["name"] == "rope"
    assert sinusoidal["model"].pop("positional")["name"] == "sinusoidal"
    rope.pop("name"), sinusoidal.pop("name")
    assert rope == sinusoidal


def test_unknown_core_key_names_file_table_key_and_valid_keys(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n[model]\nn_layer = 2\n')
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, registry=registry)
    message = str(excinfo.value)
    assert message.startswith(f"{path} [model] n_layer: unknown key; did you mean 'n_layers'?")
    assert "valid keys: attention, bias, d_model, dropout" in message


def test_unknown_plugin_option_names_the_plugin_and_its_options(tmp_path, registry):
    path = write(
        tmp_path / "x.toml", 'name = "x"\n[model.positional]\nname = "rope"\nthetta = 1.0\n'
    )
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, registry=registry)
    assert str(excinfo.value) == (
        f"{path} [model.positional] thetta: unknown key for positional 'rope'; "
        "did you mean 'theta'? valid keys: fraction, theta, name"
    )


def test_unknown_plugin_name_suggests(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n[model.attention]\nname = "casual"\n')
    with pytest.raises(
        ConfigError,
        match=r"unknown attention 'casual' in .*x.toml "
        r"\[model.attention\]; did you mean 'causal'\? available: causal",
    ):
        load_experiment(path, registry=registry)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[train]\nmax_steps = 'many'", "[train] max_steps: expected int, got 'many'"),
        ("[train]\nmax_steps = 2.5", "[train] max_steps: expected int, got 2.5"),
        ("[model]\nbias = 'no'", "[model] bias: expected bool, got 'no'"),
        ("[model]\nnorm_placement = 'x'", "expected one of 'pre', 'post', 'sandwich', got 'x'"),
        ("[train]\nmax_steps = 0", "[train] max_steps: 'max_steps' must be > 0: 0"),
        ("[model]\nd_model = 100\nn_heads = 3", "n_heads (3) must divide d_model (100)"),
        ("[train]\nbatch_size = 6\nmicro_batch_size = 4", "micro_batch_size (4) must divide"),
        ("[optimizer]\nname = 'adamw'\nbetas = [0.9]", "[optimizer] betas:"),
        ("[model]\nattention = 3", '[model.attention]: expected name = "<attention>"'),
        (
            "[model.positional]\nname = 'sinusoidal'\nbase = inf",
            "[model.positional] base: expected a finite number, got inf",
        ),
        ("[optimizer]\nlr = nan", "[optimizer] lr: expected a finite number, got nan"),
        # A string is no array, even though Python would take it apart into characters.
        (
            "[optimizer]\nname = 'adamw'\nbetas = '09'",
            "[optimizer] betas: expected an array (tuple[float, float]), got '09'",
        ),
        (
            "[optimizer]\nname = 'adamw'\nbetas = [0.9, 0.95, 0.99]",
            "[optimizer] betas: expected 2 values (tuple[float, float]), got [0.9, 0.95, 0.99]",
        ),
        (
            "[optimizer]\nname = 'adamw'\nbetas = [0.9, 'x']",
            "[optimizer] betas: item 1: expected float, got 'x'",
        ),
        (
            "[data.dataset]\nname = 'text'\npaths = 'corpus.txt'",
            "[data.dataset] paths: expected an array (list[str]), got 'corpus.txt'",
        ),
        ("seed = 1", "(top level) name: missing, and the experiment requires it (str)"),
        ("loggers = 'json'", "(top level) loggers: expected an array of tables, [[loggers]]"),
    ],
)
def test_bad_values_are_named(tmp_path, registry, toml, expected):
    name = "" if toml.startswith("seed") else 'name = "x"\n'
    path = write(tmp_path / "x.toml", f"{name}{toml}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, registry=registry)
    assert expected in str(excinfo.value)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[model.attention]\nname = 'causal'\nn_kv_heads = 3",
            "[model.attention]: n_kv_heads (3) must divide n_heads (4)",
        ),
        (
            "[model]\nd_model = 12\nn_heads = 2\n[model.positional]\nname = 'rope'\nfraction = 0.5",
            "[model.positional]: rope rotates 3 of 6 head dims (d_model 12 / n_heads 2 * "
            "fraction 0.5); it needs an even number >= 2",
        ),
        (
            "[model]\nd_model = 8\nn_heads = 8\n[model.positional]\nname = 'rope'",
            "[model.positional]: rope rotates 1 of 1 head dims",
        ),
        (
            "[model.attention]\nname = 'eager'\nwindow = 0",
            "[model.attention] window (attention 'eager'): 'window' must be >= 1: 0",
        ),
        (
            "[model.attention]\nname = 'linear'\nn_kv_heads = 0",
            "[model.attention] n_kv_heads (attention 'linear'): 'n_kv_heads' must be >= 1: 0",
        ),
    ],
)
def test_constraints_across_keys_name_file_table_and_keys(tmp_path, registry, toml, expected):
    path = write(tmp_path / "x.toml", f'name = "x"\n{toml}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, registry=registry)
    assert str(excinfo.value).startswith(f"{path} {expected}")


def _even(instance, attribute, value):
    if value % 2:
        raise ValueError(f"must be even, got {value}")  # names no key: tel adds it


@attrs.frozen
class _EvenOptions:
    width: int = attrs.field(default=2, validator=_even)
    depth: int = attrs.field(default=2, validator=_even)

    def __attrs_post_init__(self) -> None:
        if self.width * self.depth > 100:
            raise ValueError("width * depth must be at most 100")


class _EvenPlugin:
    @hookimpl
    def register_ffn(self, register):
        register("evens", lambda options, ctx: None, options=_EvenOptions)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("depth = 3", "[model.ffn] depth (ffn 'evens'): must be even, got 3"),
        ("width = 4\ndepth = 5", "[model.ffn] depth (ffn 'evens'): must be even, got 5"),
        ("width = 20\ndepth = 20", "[model.ffn] (ffn 'evens'): width * depth must be at most"),
    ],
)
def test_a_validators_error_names_file_table_and_key(tmp_path, registry, table, expected):
    registry.add_plugin(_EvenPlugin(), name="evens")
    path = write(tmp_path / "x.toml", f'name = "x"\n[model.ffn]\nname = "evens"\n{table}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, registry=registry)
    assert str(excinfo.value).startswith(f"{path} {expected}")


def test_a_constraint_broken_by_set_names_the_override(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(path, ["model.attention.n_kv_heads=3"], registry=registry)
    assert str(excinfo.value) == (
        "--set model.attention.n_kv_heads=3 [model.attention]: n_kv_heads (3) must divide "
        "n_heads (4): each key/value head serves a whole group of query heads"
    )


def test_invalid_toml_names_file_and_line(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n[model\n')
    with pytest.raises(ConfigError, match=r"x.toml: invalid TOML: .*line 2"):
        load_experiment(path, registry=registry)


def test_missing_file(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such experiment file"):
        load_experiment(tmp_path / "nope.toml", registry=registry)


def test_extends_is_relative_to_the_file_and_deep_merged(tmp_path, registry):
    (tmp_path / "base").mkdir()
    write(
        tmp_path / "base" / "base.toml",
        'name = "base"\n[model]\nd_model = 64\nn_layers = 3\n[train]\nmax_steps = 10\n',
    )
    child = write(
        tmp_path / "child.toml",
        'extends = "base/base.toml"\nname = "child"\n[model]\nn_layers = 5\n',
    )
    exp = load_experiment(child, registry=registry)
    assert (exp.name, exp.model.d_model, exp.model.n_layers, exp.train.max_steps) == (
        "child",
        64,
        5,
        10,
    )


def test_error_names_the_file_that_set_the_key(tmp_path, registry):
    base = write(tmp_path / "base.toml", 'name = "base"\n[model]\nn_layer = 3\n')
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\nname = "child"\n')
    with pytest.raises(ConfigError, match=rf"^{base} \[model\] n_layer: unknown key"):
        load_experiment(child, registry=registry)


def test_changing_a_components_name_drops_the_old_ones_options(tmp_path, registry):
    write(tmp_path / "base.toml", 'name = "b"\n[model.positional]\nname = "rope"\ntheta = 500.0\n')
    child = write(
        tmp_path / "child.toml",
        'extends = "base.toml"\nname = "c"\n[model.positional]\nname = "sinusoidal"\n',
    )
    exp = load_experiment(child, registry=registry)
    assert exp.model.positional.name == "sinusoidal"
    # ... but keeping the name keeps (and merges) the options
    exp = load_experiment(child, ["model.positional.name=rope"], registry=registry)
    assert exp.model.positional.options.theta == 10000.0


@attrs.frozen
class NeedsScale:
    #: No default: an experiment must give it.
    scale: float


class RequiredOptionPlugin:
    @hookimpl
    def register_norms(self, register):
        register("scaled", lambda options, dim: torch.nn.Identity(), options=NeedsScale)


def test_a_missing_required_option_names_file_table_and_key(tmp_path, registry):
    registry.add_plugin(RequiredOptionPlugin(), name="required")
    parent = write(tmp_path / "parent.toml", 'name = "x"\n[model.norm]\nname = "scaled"\n')
    child = write(tmp_path / "child.toml", 'extends = "parent.toml"\nseed = 3\n')
    for path, overrides in ((parent, []), (child, ["train.max_steps=3"])):
        with pytest.raises(ConfigError) as excinfo:
            load_experiment(path, overrides, registry=registry)
        # The file that selected the component, not the last layer read.
        assert str(excinfo.value) == (
            f"{parent} [model.norm] scale: missing, and norm 'scaled' requires it (float)"
        )
    exp = load_experiment(parent, ["model.norm.scale=2"], registry=registry)
    assert exp.model.norm.options.scale == 2.0


def test_extends_cycle_and_missing_parent(tmp_path, registry):
    write(tmp_path / "a.toml", 'extends = "b.toml"\nname = "a"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\nname = "b"\n')
    with pytest.raises(ConfigError, match="extends forms a cycle"):
        load_experiment(tmp_path / "a.toml", registry=registry)
    write(tmp_path / "c.toml", 'extends = "gone.toml"\nname = "c"\n')
    with pytest.raises(ConfigError, match=r"extends = 'gone.toml', but .*gone.toml does not exist"):
        load_experiment(tmp_path / "c.toml", registry=registry)
    (tmp_path / "folder").mkdir()
    write(tmp_path / "d.toml", 'extends = "folder"\nname = "d"\n')
    with pytest.raises(ConfigError, match=r"d.toml: extends = 'folder', a directory; name an "):
        load_experiment(tmp_path / "d.toml", registry=registry)


def test_set_overrides_parse_toml_values_else_strings(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n')
    exp = load_experiment(
        path,
        [
            "train.max_steps=200",
            "model.positional.name=rope",
            "model.positional.theta=500",
            "sample.prompt=hello world",
            "optimizer.betas=[0.8, 0.9]",
            "model.bias=false",
        ],
        registry=registry,
    )
    assert exp.train.max_steps == 200
    assert exp.model.positional.name == "rope"
    assert exp.model.positional.options.theta == 500.0
    assert exp.sample.prompt == "hello world"
    assert exp.optimizer.options.betas == (0.8, 0.9)
    assert exp.model.bias is False


def test_set_errors_name_the_override(tmp_path, registry):
    path = write(tmp_path / "x.toml", 'name = "x"\n')
    with pytest.raises(
        ConfigError, match=r"^--set train.max_step=3 \[train\] max_step: unknown key"
    ):
        load_experiment(path, ["train.max_step=3"], registry=registry)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_experiment(path, ["train.max_steps"], registry=registry)


def test_resolved_config_runs_again_as_is(tmp_path, registry):
    exp = load_experiment(EXPERIMENTS / "shakespeare_char.toml", registry=registry)
    again = load_experiment(write(tmp_path / "resolved.toml", dump_toml(exp)), registry=registry)
    assert again == exp


def test_every_experiment_file_loads(registry):
    for path in sorted(EXPERIMENTS.glob("*.toml")):
        load_experiment(path, registry=registry)


def test_merge_shorthand_then_options():
    merged = merge({"positional": "rope"}, {"positional": {"theta": 5.0}})
    assert merged == {"positional": {"name": "rope", "theta": 5.0}}


def test_experiment_from_dict(registry, tiny):
    exp = experiment_from_dict(tiny, registry)
    assert exp.model.d_model == 32
