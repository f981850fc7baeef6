"""The shape of the code: plugins use the public API, tel_core is layered, nothing cycles.

``lint-imports`` (in CI) checks the layers written in pyproject.toml; these tests check
what it does not: that the plugins and the example package import ``tel_core.plugin``
alone (``tel_core.testing`` too in tests), that no module imports another in a cycle,
imports inside functions included, and that every package is installed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

from .conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PUBLIC = "tel_core.plugin"
KIT = "tel_core.testing"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (line, name), wherever the import statement is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "tel_core":  # `from tel_core import x`: x is a module or a name
                found += [(node.lineno, f"tel_core.{alias.name}") for alias in node.names]
    return found


def is_test(path: Path) -> bool:
    return "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"


def plugin_files() -> list[Path]:
    return sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))


def forbidden_imports(path: Path) -> list[str]:
    allowed = {PUBLIC, KIT} if is_test(path) else {PUBLIC}
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for line, name in imported_modules(path)
        if (name == "tel_core" or name.startswith("tel_core."))
        and not any(name == a or name.startswith(f"{a}.") for a in allowed)
    ]


def test_plugins_and_the_example_package_import_only_the_public_api():
    files = plugin_files()
    assert len(files) > 40 and any(is_test(f) for f in files)
    problems = [problem for path in files for problem in forbidden_imports(path)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_imports_inside_functions(tmp_path):
    plugin = tmp_path / "sneaky.py"
    plugin.write_text(
        "from tel_core.plugin import hookimpl\n\n"
        "def factory(options):\n"
        "    from tel_core.model.nn import Positional\n"
        "    import tel_core.registry.registry\n"
        "    from tel_core import ui, plugin\n"
        "    return Positional()\n"
    )
    found = [name for _, name in imported_modules(plugin)]
    assert "tel_core.model.nn" in found and "tel_core.registry.registry" in found
    assert "tel_core.ui" in found and "tel_core.plugin" in found


def test_the_public_api_holds_what_plugins_use():
    import tel_core.plugin as api

    assert sorted(api.__all__) == sorted(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing
    for name in ("hookimpl", "ModelContext", "Positional", "Probe", "Tokenizer", "LayerCache"):
        assert name in api.__all__


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # grimp reads every import statement, inside functions and TYPE_CHECKING blocks too.
    return grimp.build_graph("tel_core", "tel_plugins")


def test_no_module_imports_itself_through_others(graph):
    assert cycles(graph) == []


def test_the_graph_holds_imports_made_inside_functions(graph):
    # `tel run`'s handler imports the loader when it runs, so that `tel --help` stays quick.
    assert "load_experiment" not in (ROOT / "tel_core/commands/run.py").read_text().split("def ")[0]
    assert graph.direct_import_exists(
        importer="tel_core.commands.run", imported="tel_core.train.experiment"
    )


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.build_graph("tel_core")
    graph.add_import(importer="tel_core.errors", imported="tel_core.use.load_run")
    found = cycles(graph)
    assert found and "tel_core.errors" in found[0] and "tel_core.use.load_run" in found[0]


def test_every_package_is_installed_and_says_what_it_owns():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(("tel_core", *init.parent.relative_to(ROOT / "tel_core").parts))
        for init in (ROOT / "tel_core").rglob("__init__.py")
    } | {
        ".".join(("tel_plugins", *init.parent.relative_to(ROOT / "plugins").parts))
        for init in (ROOT / "plugins").rglob("__init__.py")
    }
    assert listed == on_disk
    for package in (ROOT / "tel_core").iterdir():
        if (package / "__init__.py").is_file():
            doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
            assert doc, f"tel_core/{package.name}/__init__.py says nothing of what it owns"


def test_the_top_level_of_tel_core_holds_at_most_eight_modules():
    modules = sorted(p.name for p in (ROOT / "tel_core").glob("*.py"))
    assert len(modules) <= 8, modules
