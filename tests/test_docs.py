"""The README's set-up commands stay true: CI runs exactly its test command."""

from __future__ import annotations

from tel_core.registry import KINDS

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
