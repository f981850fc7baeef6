"""tel eval, generate, chat and export from the command line: output, files, bad inputs."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tel_core.cli import main
from tel_core.registry.registry import Registry

from .conftest import ROOT
from .trained import one_thread, train_run  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained run (with step snapshots), one of another architecture, one without
    checkpoints, and one whose tokenizer refuses characters it never saw."""
    registry = Registry()
    registry.load_entry_points()
    root = tmp_path_factory.mktemp("use")
    trained = train_run(root / "a", registry, {"train": {"checkpoint_every": 3}})
    other = train_run(root / "b", registry, {"model": {"d_model": 16}})
    bare = shutil.copytree(trained, root / "bare", ignore=shutil.ignore_patterns("*.pt"))
    strict = train_run(
        root / "c", registry, {"data": {"tokenizer": {"name": "char", "unknown": "error"}}}
    )
    return {"trained": trained, "other": other, "bare": bare, "strict": strict}


def tel(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tel: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


COMMANDS = {
    "eval": [],
    "generate": ["--max-new-tokens", "4"],
    "chat": [],
    "export": ["--format", "safetensors", "-o", "OUT"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_inputs_are_one_line_and_exit_code_2(capsys, runs, tmp_path, command, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    extra = [tmp_path / "out" if a == "OUT" else a for a in COMMANDS[command]]
    code, _, err = tel(capsys, command, runs["bare"], *extra)
    one_line_error(code, err, "has no checkpoint")
    foreign = runs["other"] / "checkpoints" / "best.pt"
    code, _, err = tel(capsys, command, runs["trained"], "--checkpoint", foreign, *extra)
    one_line_error(code, err, "holds another model", "model.d_model (16 -> 32)")
    code, _, err = tel(capsys, command, runs["trained"], "--checkpoint", "newest", *extra)
    one_line_error(
        code,
        err,
        "unknown --checkpoint 'newest': give best, latest, step:N or the path of a checkpoint "
        f"file; {runs['trained']} has best, latest, step:3, step:6",
    )


def test_a_prompt_the_tokenizer_cannot_encode(capsys, runs):
    code, out, err = tel(capsys, "generate", runs["strict"], "--prompt", "☃")
    one_line_error(code, err, "'☃' (U+2603) never occurs in the training split")
    assert out == ""


def test_eval_prints_a_table_and_writes_json(capsys, runs):
    code, out, err = tel(capsys, "eval", runs["trained"], "--checkpoint", "latest", "--no-plot")
    assert code == 0, err
    assert "checkpoint latest, step 6; val split (whole split)" in out
    assert "top-5 accuracy" in out
    result = json.loads((runs["trained"] / "eval" / "latest-val.json").read_text())
    assert set(result["metrics"]) >= {"loss", "ppl", "bits_per_byte", "accuracy_top5"}
    code, out, _ = tel(capsys, "eval", runs["trained"], "--batches", "2", "--json", "--no-plot")
    assert code == 0 and json.loads(out)["batches"] == 2
    code, _, err = tel(capsys, "eval", runs["trained"], "--block-size", "32")
    one_line_error(code, err, "positional 'learned'", "cannot run on longer sequences")
    code, _, err = tel(capsys, "eval", runs["trained"], "--set", "model.n_layers=3")
    one_line_error(code, err, "only keys of [data]")


def test_generate_streams_greedy_text_the_same_with_and_without_the_cache(capsys, runs):
    args = ["generate", runs["trained"], "--prompt", "12: the", "--max-new-tokens", "30"]
    code, cached, err = tel(capsys, *args, "--temperature", "0")
    assert code == 0, err
    assert cached.startswith("12: the") and len(cached) == len("12: the") + 30 + 1
    _, recomputed, _ = tel(capsys, *args, "--temperature", "0", "--no-cache")
    assert recomputed == cached
    # Sampling: one seed, one text; samples one after the other.
    _, first, _ = tel(capsys, *args, "--seed", "3", "--num-samples", "2", "--top-p", "0.9")
    _, again, _ = tel(capsys, *args, "--seed", "3", "--num-samples", "2", "--top-p", "0.9")
    assert first == again and "--- sample 2 of 2" in first
    code, _, err = tel(capsys, *args, "--top-p", "1.5")
    one_line_error(code, err, "top-p must be in (0, 1]")


#: One thread for the tiny model in a child process too (see ``one_thread``).
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_tel(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tel_core", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ONE_THREAD,
        **kwargs,
    )


def test_chat_reads_piped_input(runs):
    script = "12: the\ntemp 0\nlen 12\n12: the\ntemp hot\n\nq\nnever read\n"
    result = run_tel("chat", runs["trained"], "--seed", "1", input=script)
    assert result.returncode == 0, result.stderr
    head, first, second_and_rest = result.stdout.split("> 12: the")
    second, rest = second_and_rest[:13], second_and_rest[13:]
    lines = head.splitlines()
    assert lines[0].startswith(f"tel chat: {runs['trained']} (checkpoint best, step 6, val loss ")
    assert lines[1] == "settings: temperature 0.8, top-k 50, top-p 1, max new tokens 8, seed 1"
    assert "quit, exit, q or Ctrl-D leave" in lines[2]
    # Each continuation follows its prompt (it may hold newlines of its own).
    continuation, settings = first[:9], first[9:]
    assert len(continuation) == 9 and continuation.endswith("\n")
    assert settings.splitlines() == [
        "> temp 0",
        "settings: temperature 0, top-k 50, top-p 1, max new tokens 8, seed 1",
        "> len 12",
        "settings: temperature 0, top-k 50, top-p 1, max new tokens 12, seed 1",
    ]
    assert second.endswith("\n")
    assert rest.splitlines() == ["> temp hot", "> ", "> q"]  # nothing after quit is read
    assert result.stderr.strip() == "tel: error: temp takes a number"
    # The end of the input leaves too (Ctrl-D).
    assert run_tel("chat", runs["trained"], input="12: the\n").returncode == 0


def test_ctrl_c_stops_a_generation_and_chat_goes_on(runs):
    chat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tel_core",
            "chat",
            str(runs["trained"]),
            "--max-new-tokens",
            "10000000",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=0,
        env=ONE_THREAD,
    )
    try:
        chat.stdin.write("go on\n")
        seen = ""
        deadline = time.monotonic() + 240
        while "> go on" not in seen or len(seen.split("> go on", 1)[1]) < 20:
            assert time.monotonic() < deadline, f"no continuation came: {seen!r}"
            if select.select([chat.stdout], [], [], 1)[0]:
                seen += os.read(chat.stdout.fileno(), 4096).decode(errors="replace")
        chat.send_signal(signal.SIGINT)
        chat.stdin.write("len 3\nquit\n")
        out, err = chat.communicate(timeout=120)
    finally:
        chat.kill()
    assert chat.returncode == 0, err
    assert " [stopped]\n> len 3\nsettings:" in seen + out


def test_export_safetensors_round_trips(capsys, runs, tmp_path):
    out_dir = tmp_path / "st"
    code, _, err = tel(capsys, "export", runs["trained"], "--format", "safetensors", "-o", out_dir)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.safetensors", "tel.json"]
    args = ["--prompt", "12: the", "--max-new-tokens", "20", "--temperature", "0"]
    _, from_export, _ = tel(capsys, "generate", out_dir, *args)
    _, from_run, _ = tel(capsys, "generate", runs["trained"], *args)
    assert from_export == from_run
    code, out, _ = tel(capsys, "eval", out_dir, "--json", "--no-plot")
    assert code == 0 and json.loads(out)["checkpoint"] == "best"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_does_not_import_torch(command):
    code = (
        "import sys\n"
        "from tel_core.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
