"""The example plugin package, from outside: pip-install it, list it, select it, test it.

A fresh virtual environment sees the running one's packages (tel, torch) through a
.pth file, and pip installs examples/tel-extras into it without dependencies, without
build isolation and without an index: nothing is downloaded, and torch is never
resolved. Then `tel plugins` must name the package's distribution and version, a short
`tel run` must train with its components, and its own tests must pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from .conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = ROOT / "examples" / "tel-extras"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment that sees this one's packages, with tel-extras installed."""
    root = tmp_path_factory.mktemp("example")
    source = root / "tel-extras"  # a copy: building in place would leave build/ behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", env)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(site.stdout.strip()) / "tel-outer.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in sorted(ours))
    )
    started = time.perf_counter()
    run(
        *(sys.executable, "-m", "pip", "--python", python, "install", "--quiet"),
        *("--no-deps", "--no-build-isolation", "--no-index", source),
    )
    print(f"pip install of tel-extras: {time.perf_counter() - started:.1f} s")
    return python


def test_the_example_depends_on_tel_not_torch():
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in project["dependencies"]] == ["tel"]
    assert project["entry-points"]["tel"]


def test_tel_plugins_names_its_distribution_and_version(venv):
    listing = json.loads(run(venv, "-m", "tel_core", "plugins", "--json").stdout)
    found = {(kind, c["name"]): c for kind, items in listing["components"].items() for c in items}
    for kind, name in (("norm", "scalenorm"), ("attention", "talking_heads")):
        component = found[kind, name]
        assert component["distribution"] == "tel-extras"
        assert component["version"] == "0.1.0"
        assert component["module"].startswith("tel_extras.")
    assert listing["broken"] == [] and listing["conflicts"] == []
    text = run(venv, "-m", "tel_core", "plugins", "--kind", "attention").stdout
    assert "talking_heads  tel-extras 0.1.0  tel_extras.talking_heads" in text
    assert "mix_scores: bool = true" in text


def test_tel_run_selects_its_components_by_name(venv, tmp_path, corpus):
    run_dir = tmp_path / "run"
    overrides = {
        "data.dataset.name": "text",
        "data.dataset.paths": f'["{corpus.as_posix()}"]',
        "data.block_size": "16",
        "model.d_model": "32",
        "model.n_layers": "1",
        "train.batch_size": "4",
        "train.max_steps": "3",
        "train.eval_every": "3",
        "train.eval_batches": "1",
        "sample.max_new_tokens": "8",
    }
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    experiment = EXAMPLE / "experiments" / "talking_heads.toml"
    result = run(venv, "-m", "tel_core", "run", experiment, "--run-dir", run_dir, *sets)
    assert "val loss" in result.stdout
    plugins = json.loads((run_dir / "manifest.json").read_text())["plugins"]
    chosen = {p["key"]: p for p in plugins}
    assert chosen["model.attention"]["name"] == "talking_heads"
    assert chosen["model.norm"]["name"] == "scalenorm"
    assert chosen["model.norm"]["distribution"] == "tel-extras"
    assert chosen["model.norm"]["version"] == "0.1.0"


def test_its_own_tests_pass_from_its_folder(venv, tmp_path):
    source = tmp_path / "tel-extras"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    result = run(venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=source)
    assert " passed" in result.stdout and "failed" not in result.stdout
