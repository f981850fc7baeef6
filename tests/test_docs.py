"""The README's set-up commands stay true (CI runs exactly its test command), and the plugin
author's guide says what a plugin receives, as the code has it."""

from __future__ import annotations

import inspect

import attrs
import pytest

from tel_core import testing
from tel_core.registry import interfaces
from tel_core.registry.registry import KINDS
from tel_core.testing import tiny

from .conftest import ROOT


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:6] if line.startswith("    ")]


def test_readme_opens_with_the_setup_and_test_commands():
    setup, test = readme_commands()
    assert "pip install torch==2.13.0" in setup
    assert setup.endswith("tel run experiments/rope.toml")
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in [line.strip() for line in ci]
    # torch comes first, pinned, so pip never pulls a CUDA build
    torch_line = next(i for i, line in enumerate(ci) if "torch==2.13.0" in line)
    tel_line = next(i for i, line in enumerate(ci) if '-e ".[dev]"' in line)
    assert torch_line < tel_line


def test_ci_installs_chromium_and_never_skips_the_browser_test():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    _, test = readme_commands()
    install = next(i for i, line in enumerate(ci) if "apt-get install" in line)
    assert "chromium chromium-driver" in ci[install] and "-qq" in ci[install]
    assert ci.index("export TEL_REQUIRE_BROWSER=1") < ci.index(test)
    # Idempotent: apt runs only where Chromium is missing.
    guard = next(i for i, line in enumerate(ci) if line.startswith("if ! command -v chromium"))
    assert guard < install


def test_readme_plugin_table_lists_every_builtin(registry):
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| kind | components |") :]
    table = table[: table.index("\n\n")]
    for kind in KINDS:
        for name, component in registry.components(kind).items():
            if component.source.distribution == "tel":
                assert f"`{name}`" in table, f"{kind} {name!r} missing from the README table"


GUIDE = ROOT / "docs" / "writing-plugins.md"


def fields_and_properties(cls: type) -> list[str]:
    names = [f.name for f in attrs.fields(cls)]
    return names + [n for n, v in vars(cls).items() if isinstance(v, property)]


@pytest.mark.parametrize(
    "cls",
    [
        interfaces.ModelContext,
        interfaces.DataContext,
        interfaces.ScheduleContext,
        interfaces.LoggerContext,
        interfaces.ParameterGroups,
    ],
    ids=lambda cls: cls.__name__,
)
def test_the_guide_names_every_field_a_plugin_receives(cls):
    guide = GUIDE.read_text()
    assert f"`{cls.__name__}`" in guide
    missing = [name for name in fields_and_properties(cls) if f"`{name}" not in guide]
    assert not missing, f"docs/writing-plugins.md does not say what {cls.__name__}.{missing} are"


def test_the_guide_gives_the_loggers_methods_and_with_weight_decay_as_they_are():
    guide = GUIDE.read_text()
    for name in ("log", "log_text", "close"):
        params = list(inspect.signature(getattr(interfaces.Logger, name)).parameters)[1:]
        assert f"`{name}({', '.join(params)})`" in guide, name
    optional = [n for n, f in vars(interfaces.Logger).items() if callable(f) and n[0] != "_"]
    required = interfaces.Logger.__abstractmethods__
    assert sorted(required) == ["log"] and "is the one method a logger must have" in guide
    assert all(f"`{n}(" in guide for n in optional)
    signature = inspect.signature(interfaces.ParameterGroups.with_weight_decay)
    params = ", ".join(
        p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        for p in list(signature.parameters.values())[1:]
    )
    assert f"with_weight_decay({params})" in guide.replace("\n", " ")


def test_the_guide_lists_the_components_tel_train_takes():
    guide = GUIDE.read_text()
    assert testing.COMPONENT_KEYS is tiny.COMPONENT_KEYS
    assert "`tel_core.testing.COMPONENT_KEYS`" in guide
    paragraph = guide[guide.index("- `tel_train(") :].split("\n\n")[0]
    missing = [key for key in testing.COMPONENT_KEYS if f"`{key}`" not in paragraph]
    assert not missing, f"the guide's tel_train paragraph does not name {missing}"
