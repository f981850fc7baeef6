"""Data parallel: torchrun with two CPU processes (gloo) trains exactly like one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from .conftest import ROOT, TINY


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def curve(run_dir, key):
    return [r[key] for r in records(run_dir) if key in r]


def tel_run(*args, processes=None, env=None):
    launcher = [sys.executable, "-m", "tel_core"]
    if processes:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "tel_core",
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*launcher, "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def padded_experiment(directory: Path) -> Path:
    """An experiment file of padded rows of unequal lengths: each process holds a different
    number of real tokens, so only normalising by the global count can match one process."""
    text = "the quick brown fox jumps over the lazy dog. " * 2
    parts = [text[i % 9 * 4 :][: 2 + (i * 7) % 39] for i in range(400)]
    (directory / "paragraphs.txt").write_text("\n\n".join(parts))
    tiny = json.loads(json.dumps(TINY))
    tiny["data"]["dataset"].update(paths=[str(directory / "paragraphs.txt")], separator="\n\n")
    tiny["data"]["batching"] = "pad"
    tiny["train"].update(batch_size=8, micro_batch_size=2, max_steps=10, eval_every=5)
    # Probes: every process takes part (gradients after the all-reduce), rank 0 writes.
    tiny["probes"] = [
        {"name": "grad_norms", "every": 5},
        {"name": "activations", "every": 5},
        {"name": "stability"},
    ]
    path = directory / "ddp.toml"
    path.write_text(tomli_w.dumps(tiny))
    return path


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The padded experiment trained by two processes, once for the module: (its file, the
    run directory, torchrun's result)."""
    directory = tmp_path_factory.mktemp("ddp")
    path = padded_experiment(directory)
    result = tel_run(str(path), "--run-dir", str(directory / "two"), processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return path, directory / "two", result


def test_two_processes_train_like_one(tmp_path, two_processes):
    padded_file, _, two = two_processes
    shutil.copytree(two_processes[1], tmp_path / "two")
    one = tel_run(str(padded_file), "--run-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr

    probe_keys = ("grad_norm/blocks.0.attn", "update_ratio/blocks.1.ffn", "act/rms/layer1")
    for key in ("train/loss", "train/grad_norm", "val/loss", *probe_keys, "stability/loss_avg"):
        a, b = curve(tmp_path / "one", key), curve(tmp_path / "two", key)
        assert len(a) == len(b) > 0
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5, key
    # The global token count, not each process's own.
    assert curve(tmp_path / "two", "train/tokens") == curve(tmp_path / "one", "train/tokens")
    # Rank 0 alone logs and writes the run directory.
    assert [r["step"] for r in records(tmp_path / "two") if "train/loss" in r] == list(range(1, 11))
    assert [r["step"] for r in records(tmp_path / "two") if "act/rms/layer0" in r] == [5, 10]
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["accumulation_steps"] == 2
    # Scored on the validation set one process uses: it depends on neither count.
    single = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["validation"] == single["validation"]
    # One process tokenizes and says so (a line, then a summary per split), and logs.
    assert sum(line.startswith("tiny: tokenizing") for line in two.stdout.splitlines()) == 1
    assert two.stdout.count("tokenizing train:") == two.stdout.count("val loss") == 1


def test_one_process_under_torchrun_takes_the_data_parallel_path(tmp_path, two_processes):
    # What a one-GPU machine can check of NCCL: here gloo, DDP and the collectives, alone.
    padded_file = two_processes[0]
    alone = tel_run(str(padded_file), "--run-dir", str(tmp_path / "torchrun"), processes=1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    plain = tel_run(str(padded_file), "--run-dir", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    manifest = json.loads((tmp_path / "torchrun" / "manifest.json").read_text())
    assert manifest["processes"] == 1 and manifest["backend"] == "gloo"
    assert json.loads((tmp_path / "plain" / "manifest.json").read_text())["backend"] is None
    for key in ("train/loss", "val/loss"):
        assert curve(tmp_path / "torchrun", key) == curve(tmp_path / "plain", key), key


SIGNAL_PLUGIN = """
import os
import signal

import attrs

from tel_core import hookimpl
from tel_core.registry.interfaces import Logger


@attrs.frozen
class Options:
    step: int = 1


class SignalLogger(Logger):
    \"\"\"SIGTERM to this process (rank 0, where loggers live) at a step.\"\"\"

    def __init__(self, options, ctx):
        self.options = options

    def log(self, step, metrics):
        if step == self.options.step and "train/loss" in metrics:
            os.kill(os.getpid(), signal.SIGTERM)


@hookimpl
def register_loggers(register):
    register("sigterm", SignalLogger, options=Options)
"""


def test_a_stop_under_torchrun_stops_every_process_and_resumes_exactly(tmp_path, two_processes):
    path, whole, _ = two_processes
    (tmp_path / "tel_test_sigterm.py").write_text(SIGNAL_PLUGIN)
    dist = tmp_path / "tel_test_sigterm-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tel-test-sigterm\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tel]\nsigterm = tel_test_sigterm\n")
    env = {"PYTHONPATH": str(tmp_path)}
    run_dir = str(tmp_path / "run")
    # Step 3: no evaluation (every 5), no step checkpoint; the signal reaches rank 0 only.
    stop = ("--set", 'loggers=[{name = "sigterm", step = 3}]')
    stopped = tel_run(str(path), "--run-dir", run_dir, *stop, processes=2, env=env)
    assert stopped.returncode != 0
    assert stopped.stderr.count("tel: stopped by SIGTERM after step 3; saved ") == 1  # rank 0
    assert "exitcode  : 143" in stopped.stderr  # torchrun's report, for each process
    assert max(curve(tmp_path / "run", "step")) == 3

    resumed = tel_run(str(path), "--run-dir", run_dir, "--resume", processes=2, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after step 3" in resumed.stdout
    steps = [r["step"] for r in records(tmp_path / "run") if "train/loss" in r]
    assert steps == list(range(1, 11))
    for key in ("train/loss", "train/grad_norm", "val/loss"):
        assert curve(tmp_path / "run", key) == curve(whole, key), key  # bit for bit
