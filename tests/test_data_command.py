"""`tel data prepare` and `tel data analyze`; offline Hub errors through `tel run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w

from tel_core.cli import main

from .conftest import ROOT


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEL_CACHE_DIR", str(tmp_path / "cache"))
    rows = [
        {"text": f"Story {i}: a fox named Tom met a crow by the river {i % 7} times."}
        for i in range(600)
    ]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "x.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "name": "x",
                "data": {
                    "dataset": {
                        "name": "hf",
                        "path": "json",
                        "data_files": [str(tmp_path / "s.jsonl")],
                    },
                    "tokenizer": {"name": "bpe", "vocab_size": 400},
                },
            }
        )
    )
    return path


def test_prepare_tokenizes_into_the_cache_and_prints_its_statistics(experiment, capsys):
    assert main(["data", "prepare", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "tokenizing train:" in out and "MB/s" in out and "(written in" in out
    header, train, val = out.strip().splitlines()[-3:]
    assert header.split()[:4] == ["split", "documents", "tokens", "MB"]
    assert train.split()[0] == "train" and val.split()[0] == "val"
    documents = int(train.split()[1].replace(",", "")) + int(val.split()[1].replace(",", ""))
    assert documents == 600
    assert main(["data", "prepare", str(experiment)]) == 0
    again = capsys.readouterr().out
    assert "(reused)" in again and "tokenizing" not in again
    assert again.strip().splitlines()[-2:] == [train, val]


def test_analyze_prints_a_row_per_vocabulary_size(experiment, capsys):
    code = main(
        ["data", "analyze", str(experiment), "--vocab-sizes", "300,350", "--sample-mb", "1"]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("byte-level BPE trained on")
    assert lines[1].split()[:3] == ["vocab", "learned", "bytes/token"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["300", "350"]
    bytes_per_token = [float(r[2]) for r in rows]
    assert 1.0 < bytes_per_token[0] < bytes_per_token[1]  # a larger vocabulary, longer tokens
    assert all(0 < float(r[-3]) <= 100 and r[-2] == "%" for r in rows)


def test_bad_vocabulary_sizes_are_refused(experiment, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "analyze", str(experiment), "--vocab-sizes", "100"])
    assert exit_.value.code == 2
    assert "at least 257" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"dataset": {"name": "hf", "path": "tel-tests/no-such-dataset"}}, "hf dataset"),
        (
            {"dataset": "stdlib", "tokenizer": {"name": "bpe", "pretrained": "tel-tests/no-such"}},
            "bpe tokenizer: cannot fetch",
        ),
    ],
)
def test_offline_the_hub_is_one_line_from_tel_run(tmp_path, table, fragment):
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps({"name": "hub", "data": table, "train": {"max_steps": 1}}))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tel_core", "run", str(path), "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tel: error: ") and fragment in lines[0]
