"""Every hook is documented, checked by the kit and tested; every built-in is tested.

In the spirit of datasette's tests/test_plugins.py: a new hook, kit check or built-in
plugin without its docs and tests fails here, saying what is missing.
"""

from __future__ import annotations

import inspect
import re

import pytest

import tel_core.testing
from tel_core.config.options import describe_options
from tel_core.registry import hookspecs
from tel_core.registry.registry import KINDS

from .conftest import ROOT, builtin_components

GUIDE = ROOT / "docs" / "writing-plugins.md"
HOOKS = {name: f for name, f in vars(hookspecs).items() if hasattr(f, "tel_spec")}
KIND_OF = {hook: kind for kind, hook in KINDS.items()}


def guide_section(hook: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"^### `{hook}`\n(.*?)(?=^##)", text, re.S | re.M)
    return match.group(1) if match else ""


def test_every_hook_is_a_kind_of_component():
    assert set(HOOKS) == set(KINDS.values())


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_in_the_guide_with_its_contract(hook):
    section = guide_section(hook)
    assert section, f"docs/writing-plugins.md needs a section ### `{hook}`"
    blocks = re.findall(r"```text\n(.*?)\n```", section, re.S)
    assert inspect.getdoc(HOOKS[hook]) in blocks, (
        f"the guide's section on {hook} must quote its docstring from "
        f"tel_core/registry/hookspecs.py"
    )
    assert f"check_{KIND_OF[hook]}" in section


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_kit_check_that_is_itself_tested(kind):
    check = getattr(tel_core.testing, f"check_{kind}", None)
    assert check is not None and tel_core.testing.CHECKS[kind] is check
    kit_tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_testing*.py"))
    assert f"check_{kind}(" in kit_tests, f"the kit's own tests never call check_{kind}"
    assert f"`check_{kind}`" in GUIDE.read_text()


@pytest.mark.parametrize(("kind", "name"), builtin_components())
def test_every_builtin_has_its_own_test_module_using_the_kit(kind, name):
    # Names are per kind: a name two kinds share (linear) adds the kind to the second.
    path = ROOT / "tests" / "plugins" / f"test_{name}_{kind}.py"
    if not path.is_file():
        path = ROOT / "tests" / "plugins" / f"test_{name}.py"
    assert path.is_file(), f"add tests/plugins/test_{name}.py for {kind} {name!r}"
    assert f'check_{kind}("{name}"' in path.read_text(), f"{path.name} must call check_{kind}"


@pytest.mark.parametrize(("kind", "name"), builtin_components())
def test_every_builtin_documents_itself_and_each_option(registry, kind, name):
    component = registry.get(kind, name)
    assert component.doc, f"{kind} {name!r}: its factory needs a docstring"
    missing = [o.name for o in describe_options(component.options) if not o.doc]
    assert not missing, f"{kind} {name!r}: options without a #: doc: {missing}"


def test_code_blocks_that_name_a_file_are_excerpts_of_it():
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 6
    for path, block in blocks:
        assert block in (ROOT / path).read_text(), f"the guide's excerpt of {path} has drifted"


def test_the_readme_points_plugin_authors_to_the_guide_and_the_kit():
    readme = (ROOT / "README.md").read_text()
    assert "docs/writing-plugins.md" in readme and "tel_core.testing" in readme
