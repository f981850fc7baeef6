"""Data parallel: torchrun with two CPU processes (gloo) trains exactly like one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w

from .conftest import ROOT


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def curve(run_dir, key):
    return [r[key] for r in records(run_dir) if key in r]


def tel_run(*args, processes=None):
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
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*launcher, "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture
def padded_file(tmp_path, tiny, paragraphs):
    # Padded rows of unequal lengths: each process holds a different number of real
    # tokens, so only normalising by the global count can match the single process.
    tiny["data"]["dataset"].update(paths=[str(paragraphs)], separator="\n\n")
    tiny["data"]["batching"] = "pad"
    tiny["train"].update(batch_size=8, micro_batch_size=2, max_steps=10, eval_every=5)
    # Probes: every process takes part (gradients after the all-reduce), rank 0 writes.
    tiny["probes"] = [
        {"name": "grad_norms", "every": 5},
        {"name": "activations", "every": 5},
        {"name": "stability"},
    ]
    path = tmp_path / "ddp.toml"
    path.write_text(tomli_w.dumps(tiny))
    return path


def test_two_processes_train_like_one(tmp_path, padded_file):
    two = tel_run(str(padded_file), "--run-dir", str(tmp_path / "two"), processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
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
    assert two.stdout.count("tokenizing") == two.stdout.count("val loss") == 1
