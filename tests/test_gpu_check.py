"""benchmarks/gpu_check.sh cannot come back empty: an offline install from wheels alone, and
a deadline that a hung step cannot break (the table still prints, $OUT holds three files)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def carry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A carry folder as gpu_prepare.sh makes it, with tel's wheel alone: this Python has
    the rest, so an install with no index proves the wheels are all the script needs."""
    folder = tmp_path_factory.mktemp("carry")
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "-w", str(folder / "wheels"), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=folder,
    )
    return folder


def test_a_hung_step_cannot_keep_the_table_from_printing(tmp_path: Path, carry: Path) -> None:
    out = tmp_path / "out"
    deadline = 25
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT": str(out),
        "TEL_CARRY": str(carry),
        "GPU_CHECK_DEADLINE": str(deadline),
        "GPU_CHECK_HANG": "variants",
        "PIP_NO_INDEX": "1",  # offline: the carried wheels or nothing
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu"], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert elapsed < deadline + 20, done.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "logs.tar.gz", "summary.tsv"]
    rows = [line.split("\t") for line in (out / "summary.tsv").read_text().splitlines()]
    status = {row[0]: (row[1], row[5]) for row in rows}
    assert status["install"][0] == "PASS", done.stdout[-2000:]
    assert "carried wheels" in status["install"][1]
    assert status["variants"] == ("FAIL", "out of time (deadline 25s)")
    # every later step is a row of its own, none of them silently missing
    later = ["gpt2 bf16+compile", "sdpa kernels", "resume fp32", "cuda tests", "torchrun x1"]
    assert all(status[name][0] == "FAIL" for name in later), status
    assert done.returncode == sum(row[1] == "FAIL" for row in rows) == 6
    table = done.stdout[done.stdout.index("== summary") :]
    assert "check" in table and "variants" in table and "torchrun x1" in table
