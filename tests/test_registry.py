"""The registry: entry points loaded one at a time, clashes, unknown names."""

from __future__ import annotations

from importlib import metadata

import attrs
import pytest

from tel_core import hookimpl
from tel_core.config.schema import Selection
from tel_core.errors import ConfigError, PluginError
from tel_core.registry.registry import KINDS, Registry

BUILTINS = {
    "dataset": {"stdlib", "text"},
    "tokenizer": {"char", "byte"},
    "attention": {"causal", "eager", "manual", "linear"},
    "positional": {"learned", "sinusoidal", "rope", "alibi", "nope"},
    "norm": {"layernorm", "rmsnorm"},
    "ffn": {"mlp", "swiglu"},
    "optimizer": {"adamw", "sgd"},
    "schedule": {"cosine", "constant"},
    "logger": {"console", "json", "wandb", "tensorboard"},
    "probe": {"grad_norms", "activations", "attention", "stability"},
}


def test_every_builtin_is_registered_through_entry_points(registry):
    assert set(BUILTINS) == set(KINDS)
    for kind, names in BUILTINS.items():
        found = registry.components(kind)
        assert names <= set(found), kind
        for name in names:
            source = found[name].source
            assert source.distribution == "tel"
            assert source.module.startswith("tel_plugins."), source


def _with_entry_points(monkeypatch, *extra: metadata.EntryPoint) -> None:
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + [ep for ep in extra if ep.group == kwargs.get("group")]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_a_plugin_that_fails_to_import_breaks_nothing_else(monkeypatch):
    broken = metadata.EntryPoint("broken", "tel_no_such_module_anywhere", "tel")
    _with_entry_points(monkeypatch, broken)
    registry = Registry()
    registry.load_entry_points()
    assert [b.plugin for b in registry.broken] == ["broken"]
    assert "ModuleNotFoundError" in registry.broken[0].error
    assert "rope" in registry.components("positional")  # the built-ins still load
    with pytest.raises(ConfigError, match="failed to load: broken: ModuleNotFoundError"):
        registry.get("positional", "mystery")


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    _with_entry_points(monkeypatch, metadata.EntryPoint("broken", "tel_no_such_module", "tel"))
    with pytest.raises(PluginError, match=r"'broken'.*failed to load"):
        Registry().load_entry_points(strict=True)


def test_disabled_entry_points_are_not_loaded():
    registry = Registry()
    registry.load_entry_points(disabled=["positional.rope"])
    assert "rope" not in registry.components("positional")
    assert "learned" in registry.components("positional")


@attrs.frozen
class _Nothing:
    pass


class _ClashingPlugin:
    @hookimpl
    def register_attention(self, register):
        register("causal", lambda options, ctx: None, options=_Nothing)


def test_two_components_with_one_name_is_an_error_naming_both(registry):
    registry.add_plugin(_ClashingPlugin(), name="clasher")
    with pytest.raises(PluginError) as excinfo:
        registry.get("attention", "causal")
    message = str(excinfo.value)
    assert "registered twice" in message
    assert "attention.causal (tel_plugins.attention.causal" in message
    assert "clasher" in message
    assert ("attention", "causal") in registry.conflicts
    registry.get("positional", "rope")  # other components are unaffected


def test_unknown_name_suggests_the_closest_and_lists_all(registry):
    with pytest.raises(ConfigError) as excinfo:
        registry.get("positional", "rop", where="x.toml [model.positional]")
    assert str(excinfo.value) == (
        "unknown positional 'rop' in x.toml [model.positional]; did you mean 'rope'? "
        "available: alibi, learned, nope, rope, sinusoidal"
    )


class _MisspeltHook:
    @hookimpl
    def register_atention(self, register):  # one 't' short
        pass


class _SingularHook:
    @hookimpl
    def register_norm(self, register):  # the hooks are plural: register_norms
        pass


class _MisnamedArgument:
    @hookimpl
    def register_norms(self, regster):
        pass


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        (_MisspeltHook(), "unknown hook 'register_atention'; did you mean 'register_attention'?"),
        (_SingularHook(), "unknown hook 'register_norm'; did you mean 'register_norms'?"),
        (_MisnamedArgument(), "hook 'register_norms' takes regster, but tel passes only register"),
    ],
)
def test_a_misspelt_hook_is_reported_with_the_right_name(plugin, error):
    registry = Registry()
    registry.add_plugin(plugin, name="typo", strict=False)
    assert registry.broken[0].error == error
    with pytest.raises(PluginError) as excinfo:
        Registry().add_plugin(plugin, name="typo")
    assert str(excinfo.value).endswith(error) and "\n" not in str(excinfo.value)


def test_an_unknown_name_without_a_close_match_lists_what_there_is(registry):
    with pytest.raises(ConfigError) as excinfo:
        registry.get("norm", "zzz")
    assert str(excinfo.value) == "unknown norm 'zzz'; available: layernorm, rmsnorm"


def test_options_must_be_an_attrs_class():
    class BadOptions:
        pass

    class Plugin:
        @hookimpl
        def register_norms(self, register):
            register("bad", lambda options, dim: None, options=BadOptions)

    registry = Registry()
    registry.add_plugin(Plugin(), name="bad-options")
    assert registry.components("norm") == {}
    assert "must be an attrs class" in registry.broken[0].error


def test_a_plugin_added_for_one_test_can_be_removed(registry):
    class Plugin:
        @hookimpl
        def register_norms(self, register):
            register("identity", lambda options, dim: None)

    registry.add_plugin(Plugin(), name="temporary")
    assert "identity" in registry.components("norm")
    registry.remove_plugin("temporary")
    assert "identity" not in registry.components("norm")


def test_a_check_is_kept_with_its_component_and_run_on_request(registry):
    def check(options, ctx):
        if ctx > 3:
            raise ValueError(f"ctx ({ctx}) must be at most 3")

    class Plugin:
        @hookimpl
        def register_ffn(self, register):
            register("checked", lambda options, ctx: None, check=check)

    registry.add_plugin(Plugin(), name="checked")
    component = registry.get("ffn", "checked")
    assert component.check is check
    selection = Selection("checked", _Nothing())
    registry.check("ffn", selection, 3)
    with pytest.raises(ConfigError, match=r"^ctx \(4\) must be at most 3$"):
        registry.check("ffn", selection, 4)


@pytest.mark.parametrize(
    ("hook", "check", "error"),
    [
        ("register_optimizers", lambda o, c: None, "checks run only for attention, positional"),
        ("register_ffn", "not callable", "the check of ffn 'x' is not callable"),
    ],
)
def test_a_check_must_be_callable_and_on_a_model_component(hook, check, error):
    class Plugin:
        pass

    def register(self, register):
        register("x", lambda options, ctx: None, check=check)

    setattr(Plugin, hook, hookimpl(register))
    registry = Registry()
    registry.add_plugin(Plugin(), name="bad-check")
    assert registry.broken and error in registry.broken[0].error
