"""The kit's common parts: resolving a component and its options, train_tiny, fixtures."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping

import attrs
import pytest

from tel_core import hookimpl
from tel_core.registry.interfaces import Logger
from tel_core.registry.registry import Component, Source, default_registry
from tel_core.testing import (
    LOOP_METRICS,
    ConformanceError,
    UndocumentedOptionsWarning,
    check_norm,
    check_schedule,
    train_tiny,
)
from tel_core.testing.loggers import EVAL_METRICS, TRAIN_METRICS

pytest_plugins = ["pytester"]


def test_an_unknown_name_says_how_plugins_are_found(registry):
    with pytest.raises(ConformanceError) as excinfo:
        check_norm("scalenrom", registry=registry)
    message = str(excinfo.value)
    assert "unknown norm 'scalenrom'" in message and "pip install -e ." in message


def test_a_component_of_another_kind_is_refused(registry):
    with pytest.raises(ConformanceError, match="positional 'rope' is not a norm"):
        check_norm(registry.get("positional", "rope"))


def test_dict_options_are_checked_like_a_toml_table(registry):
    check_norm("layernorm", {"eps": 1e-3, "bias": False}, registry=registry)
    with pytest.raises(ConformanceError, match="epsilon: unknown key for norm 'layernorm'"):
        check_norm("layernorm", {"epsilon": 1e-3}, registry=registry)
    with pytest.raises(ConformanceError, match=r"options must be a mapping or a LayerNormOptions"):
        check_norm("layernorm", 1e-3, registry=registry)


@attrs.frozen
class Needs:
    #: Where to look; no default.
    where: str
    #: A default that None (left out of TOML) would not give back.
    cap: int | None = 5


@attrs.frozen
class Raw:
    #: Bytes, which TOML cannot hold.
    token: bytes = b"x"


def _schedule(options, ctx):
    return lambda step: ctx.base_lr


def schedule_component(name: str, options: type) -> Component:
    source = Source(plugin="test", module=__name__)
    return Component(kind="schedule", name=name, factory=_schedule, options=options, source=source)


def test_required_options_must_be_given():
    component = schedule_component("needy", Needs)
    with pytest.raises(ConformanceError, match=r"has required options .*pass options="):
        check_schedule(component)
    check_schedule(component, {"where": "here"})


def test_options_must_survive_the_run_directorys_config_toml():
    raw = schedule_component("raw", Raw)
    with pytest.raises(
        ConformanceError, match=r"options survive config\.toml: .*cannot be written"
    ):
        check_schedule(raw)
    needy = schedule_component("needy", Needs)
    with pytest.raises(ConformanceError, match=r"read back as .*cap=5.*, not .*cap=None"):
        check_schedule(needy, Needs(where="here", cap=None))


@attrs.frozen
class Bare:
    warmup: int = 0


def test_undocumented_options_are_a_warning_not_a_failure():
    component = schedule_component("bare", Bare)
    with pytest.warns(UndocumentedOptionsWarning, match="schedule 'bare': .*: warmup"):
        check_schedule(component)


def test_train_tiny_trains_the_chosen_components(tmp_path, registry):
    run = train_tiny(
        str(tmp_path / "tiny"),  # a str is a directory too
        steps=6,
        registry=registry,
        norm="rmsnorm",
        positional={"name": "rope", "theta": 100.0},
        config={"model": {"n_layers": 1}},
    )
    assert len(run.losses) == 6 and run.learned
    assert run.run_dir == tmp_path / "tiny" / "run" and run.run_dir.is_dir()
    assert attrs.evolve(run, losses=[3.0, 2.0]).learned
    assert not attrs.evolve(run, losses=[2.0, 3.0, 1.0, 1.5, 2.5, 3.5]).learned
    manifest = (run.run_dir / "manifest.json").read_text()
    assert '"name": "rmsnorm"' in manifest and '"name": "rope"' in manifest
    assert "theta = 100.0" in (run.run_dir / "config.toml").read_text()
    with pytest.raises(TypeError, match="unknown components \\['normm'\\]"):
        train_tiny(tmp_path, normm="rmsnorm")


class _Recorder(Logger):
    def __init__(self, options, ctx) -> None:
        self.records: list[tuple[int, dict]] = []
        _Recorder.last = self

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.records.append((step, dict(metrics)))


class _RecorderPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("recorder", _Recorder)


def test_loop_metrics_are_the_shapes_the_loop_logs(tel_register, tel_train):
    """The kit's LOOP_METRICS may not drift from what the training loop really emits."""
    tel_register(_RecorderPlugin())
    tel_train(steps=2, loggers=[{"name": "recorder"}])
    logged = _Recorder.last.records
    train = [m for _, m in logged if "train/loss" in m]
    evals = [m for _, m in logged if "val/loss" in m]
    assert train and evals and len(train) + len(evals) == len(logged)
    assert {frozenset(m) for m in train} == {frozenset(TRAIN_METRICS)}
    assert {frozenset(m) for m in evals} == {frozenset(EVAL_METRICS)}
    for metrics, reference in [(train[0], TRAIN_METRICS), (evals[0], EVAL_METRICS)]:
        for name, value in metrics.items():
            assert type(value) is type(reference[name]), name
            assert math.isfinite(value)
    assert LOOP_METRICS[0] == (1, TRAIN_METRICS)


def test_fixtures_register_for_one_test_and_train(pytester):
    pytester.makepyfile(
        """
        from tel_core import hookimpl
        from tel_core.registry.registry import default_registry


        def identity(options, dim):
            import torch
            return torch.nn.Identity()


        class Plugin:
            @hookimpl
            def register_norms(self, register):
                register("identity_for_one_test", identity)


        def test_registered(tel_register, tel_train):
            name = tel_register(Plugin())
            assert "identity_for_one_test" in default_registry().components("norm")
            run = tel_train(steps=2, norm="identity_for_one_test")
            assert len(run.losses) == 2 and run.run_dir.is_dir()


        def test_gone_after_the_test():
            assert "identity_for_one_test" not in default_registry().components("norm")


        class Misspelt:
            @hookimpl
            def register_norm(self, register):
                pass


        def test_a_misspelt_hook_fails_at_once(tel_register):
            import pytest
            from tel_core.errors import PluginError
            with pytest.raises(PluginError, match="register_norm"):
                tel_register(Misspelt())
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert "identity_for_one_test" not in default_registry().components("norm")


def test_the_pytest_plugin_imports_no_torch():
    code = "import sys, tel_core.pytest_plugin\nassert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
