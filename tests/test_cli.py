"""The `tel` command: end to end, exit codes, one-line errors, cheap help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from tel_core.cli import main

from .conftest import ROOT


def tel(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tel_core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tel: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def tiny_file(tmp_path, tiny) -> Path:
    path = tmp_path / "tiny.toml"
    tiny["loggers"] = [{"name": "console"}]
    path.write_text(tomli_w.dumps(tiny))
    return path


def test_tel_run_end_to_end(tmp_path, tiny_file):
    # How long it takes is benchmarks/training.py's business, never a test's.
    result = tel(
        "run", str(tiny_file), "--run-dir", str(tmp_path / "run"), "--set", "train.max_steps=8"
    )
    assert result.returncode == 0, result.stderr
    assert "val loss" in result.stdout
    assert "sample (step 8)" in result.stdout
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 8
    # The resolved config runs again as is.
    again = tel("run", str(run_dir / "config.toml"), "--run-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr


def test_python_dash_m_is_tel(tmp_path):
    assert tel("--version").stdout.strip().startswith("tel ")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plugins", "--help"],
        ["plugins", "show", "--help"],
        ["run", "--help"],
        ["sweep", "--help"],
        ["compare", "--help"],
        ["plot", "--help"],
        ["report", "--help"],
    ],
)
def test_help_does_not_import_torch(args):
    code = (
        "import sys\n"
        "from tel_core.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "for heavy in ('matplotlib', 'plotly', 'submitit', 'scipy'):\n"
        "    assert heavy not in sys.modules, heavy + ' was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_plugins_lists_every_kind():
    result = tel("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)["components"]
    assert set(listing) == {
        "dataset",
        "tokenizer",
        "attention",
        "positional",
        "norm",
        "ffn",
        "optimizer",
        "schedule",
        "logger",
        "probe",
    }
    rope = next(c for c in listing["positional"] if c["name"] == "rope")
    assert rope["distribution"] == "tel" and rope["module"] == "tel_plugins.positional.rope"
    text = tel("plugins", "--kind", "norm")
    assert "rmsnorm" in text.stdout and "rope" not in text.stdout


def test_plugins_shows_a_broken_plugin_from_a_real_entry_point(tmp_path):
    # A distribution on sys.path whose entry point cannot be imported.
    dist = tmp_path / "tel_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tel-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tel]\nbroken = tel_broken_missing_module\n")
    env = {"PYTHONPATH": str(tmp_path)}
    result = tel("plugins", env=env)
    assert result.returncode == 0, result.stderr
    assert "broken plugin broken (tel_broken_missing_module): ModuleNotFoundError" in result.stdout
    assert "rope" in result.stdout
    strict = tel("plugins", env={**env, "TEL_STRICT_PLUGINS": "1"})
    assert_one_line_error(strict, "'broken'", "failed to load")


CLASHING_PLUGIN = """
import torch
from tel_core import hookimpl


@hookimpl
def register_norms(register):
    register("rmsnorm", lambda options, dim: torch.nn.Identity())
"""


def test_plugins_marks_a_clashing_entry_and_strict_mode_fails_after_listing(tmp_path):
    (tmp_path / "tel_test_clash.py").write_text(CLASHING_PLUGIN)
    dist = tmp_path / "tel_test_clash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tel-test-clash\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tel]\nclash = tel_test_clash\n")
    env = {"PYTHONPATH": str(tmp_path)}
    listed = tel("plugins", "--kind", "norm", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    entry = lines.index(next(line for line in lines if line.startswith("  rmsnorm  ")))
    mark = lines[entry + 1].strip()
    assert mark.startswith("CONFLICT: registered by ") and "fails until one is removed" in mark
    assert "clash (tel_test_clash, tel-test-clash 0.1)" in mark
    assert "norms.rmsnorm (tel_plugins.norms.rmsnorm, tel " in mark
    data = json.loads(tel("plugins", "--json", env=env).stdout)
    marks = {c["name"]: c["conflict"] for c in data["components"]["norm"]}
    assert len(marks["rmsnorm"]) == 2 and marks["layernorm"] == []

    strict = tel("plugins", "--kind", "norm", env={**env, "TEL_STRICT_PLUGINS": "1"})
    assert "CONFLICT" in strict.stdout  # the listing still says what is wrong, then it fails
    assert_one_line_error(strict, "TEL_STRICT_PLUGINS=1: norm 'rmsnorm' is registered twice")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('name = "x"\n[model\n', ["invalid TOML"]),
        ('name = "x"\n[model.attention]\nname = "rop"\n', ["unknown attention 'rop'", "available"]),
        (
            'name = "x"\n[model.positional]\nname = "rope"\nthetta = 2.0\n',
            ["[model.positional] thetta", "did you mean 'theta'"],
        ),
        (
            'name = "x"\n[data.dataset]\nname = "text"\npaths = ["missing.txt"]\n',
            ["no file matches 'missing.txt'"],
        ),
        (
            'name = "x"\n[model.attention]\nname = "causal"\nn_kv_heads = 3\n',
            ["[model.attention]: n_kv_heads (3) must divide n_heads (4)"],
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, text, fragments):
    path = tmp_path / "x.toml"
    path.write_text(text)
    result = tel("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert_one_line_error(result, str(path) if "missing" not in text else "", *fragments)


def test_missing_experiment_file(tmp_path):
    assert_one_line_error(tel("run", str(tmp_path / "none.toml")), "no such experiment file")


def test_rerunning_into_a_finished_run_keeps_its_checkpoint(tmp_path, tiny_file):
    run_dir = tmp_path / "run"
    assert tel("run", str(tiny_file), "--run-dir", str(run_dir)).returncode == 0
    before = (run_dir / "checkpoints" / "latest.pt").read_bytes()
    assert_one_line_error(
        tel("run", str(tiny_file), "--run-dir", str(run_dir)), "already holds a run"
    )
    assert (run_dir / "checkpoints" / "latest.pt").read_bytes() == before


def test_debug_shows_the_traceback(tmp_path):
    result = tel("--debug", "run", str(tmp_path / "none.toml"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def in_process(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`tel ARGS` run by this process: the CLI without a fresh interpreter's torch import."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plugins_shows_each_components_options_with_types_defaults_and_docs(capsys):
    code, out, err = in_process(capsys, "plugins", "--json")
    assert code == 0, err
    data = json.loads(out)
    rope = next(c for c in data["components"]["positional"] if c["name"] == "rope")
    theta = next(o for o in rope["options"] if o["name"] == "theta")
    assert theta["type"] == "float" and theta["default"] == 10000.0 and not theta["required"]
    assert theta["doc"].startswith("Base of the rotation frequencies")
    assert rope["version"] and rope["factory"] == "tel_plugins.positional.rope:RoPE"
    _, text, _ = in_process(capsys, "plugins", "--kind", "positional")
    assert "rope  tel " in text and "tel_plugins.positional.rope" in text
    assert "theta: float = 10000.0  Base of the rotation frequencies" in text


@pytest.mark.parametrize("json_first", [True, False])
def test_plugins_show_one_component(capsys, json_first):
    args = ["--json", "show", "norm", "layernorm"] if json_first else ["show", "norm", "layernorm"]
    code, out, err = in_process(capsys, "plugins", *args, *([] if json_first else ["--json"]))
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == "layernorm" and info["distribution"] == "tel"
    assert info["toml"] == '[model.norm]\nname = "layernorm"\nbias = true\neps = 1e-05'


def test_plugins_show_prints_docs_options_and_the_table_that_selects_it(capsys):
    code, out, err = in_process(capsys, "plugins", "show", "positional", "rope")
    assert code == 0, err
    assert "Rotates the first" in out
    assert "factory  tel_plugins.positional.rope:RoPE" in out
    assert "fraction: float = 1.0" in out and "The share of each head" in out
    assert '[model.positional]\n    name = "rope"\n    theta = 10000.0' in out


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["norms", "x"], ["unknown kind 'norms'"]),
        (["positional", "rop"], ["unknown positional 'rop'", "'rope'"]),
    ],
)
def test_plugins_show_unknown_kind_or_name_is_one_line(capsys, args, fragments):
    code, _, err = in_process(capsys, "plugins", "show", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("tel: error: ")
    assert all(fragment in err for fragment in fragments)


def test_disabled_plugins_are_skipped_listed_and_named_when_selected(tmp_path):
    env = {"TEL_DISABLED_PLUGINS": "positional.rope, norms.rmsnorm"}
    data = json.loads(tel("plugins", "--json", env=env).stdout)
    assert "rope" not in {c["name"] for c in data["components"]["positional"]}
    assert "rmsnorm" not in {c["name"] for c in data["components"]["norm"]}
    assert "learned" in {c["name"] for c in data["components"]["positional"]}
    assert {d["plugin"] for d in data["disabled"]} == {"positional.rope", "norms.rmsnorm"}
    assert "disabled plugin positional.rope" in tel("plugins", env=env).stdout
    typo = tel("plugins", "--kind", "norm", env={"TEL_DISABLED_PLUGINS": "positional.rop"})
    assert "TEL_DISABLED_PLUGINS names 'positional.rop', but no entry point" in typo.stdout
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\n[model.positional]\nname = "rope"\n')
    assert_one_line_error(
        tel("run", str(path), env=env),
        "unknown positional 'rope'",
        "disabled by TEL_DISABLED_PLUGINS: norms.rmsnorm, positional.rope",
    )


def test_a_family_member_runs_from_the_command_line(tmp_path):
    result = tel(
        "run",
        "experiments/positional/alibi.toml",
        "--run-dir",
        str(tmp_path / "run"),
        *("--set", "train.max_steps=2", "--set", "train.batch_size=2"),
        *("--set", "train.eval_batches=1", "--set", "sample.max_new_tokens=4"),
    )
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "run" / "config.toml").read_text()
    assert 'name = "positional-alibi"' in config and 'name = "alibi"' in config


def test_linear_attention_with_a_score_bias_is_one_line(tmp_path, tiny_file):
    result = tel(
        "run",
        str(tiny_file),
        "--run-dir",
        str(tmp_path / "run"),
        *("--set", "model.attention.name=linear", "--set", "model.positional.name=alibi"),
    )
    assert_one_line_error(result, "attention 'linear' never forms attention scores")


SIGNAL_PLUGIN = '''
import os
import signal

import attrs

from tel_core import hookimpl
from tel_core.registry.interfaces import Logger


@attrs.frozen
class Options:
    step: int = 1
    signal: str = "SIGTERM"


class SignalLogger(Logger):
    """Sends this process a signal at a given step, as a scheduler or a person would."""

    def __init__(self, options, ctx):
        self.options = options

    def log(self, step, metrics):
        if step == self.options.step and "train/loss" in metrics:
            os.kill(os.getpid(), getattr(signal, self.options.signal))


@hookimpl
def register_loggers(register):
    register("signal", SignalLogger, options=Options)
'''


def test_sigterm_saves_a_checkpoint_exits_143_and_resume_finishes(tmp_path, tiny):
    # A real plugin distribution on the path: the signal arrives inside `tel run`.
    (tmp_path / "tel_test_signal.py").write_text(SIGNAL_PLUGIN)
    dist = tmp_path / "tel_test_signal-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tel-test-signal\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tel]\nsignal = tel_test_signal\n")
    env = {"PYTHONPATH": str(tmp_path)}
    tiny["train"].update(max_steps=8, eval_every=5)
    tiny["loggers"] = [{"name": "signal", "step": 3, "signal": "SIGTERM"}]
    path = tmp_path / "stop.toml"
    path.write_text(tomli_w.dumps(tiny))
    run_dir = tmp_path / "run"

    stopped = tel("run", str(path), "--run-dir", str(run_dir), env=env)
    assert stopped.returncode == 143, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stopped.stderr
    assert lines[0].startswith("tel: stopped by SIGTERM after step 3; saved ")
    assert "--resume" in lines[0]

    changed = tel(
        "run",
        str(path),
        "--run-dir",
        str(run_dir),
        "--resume",
        "--set",
        "model.n_layers=3",
        env=env,
    )
    assert_one_line_error(changed, "cannot resume", "model.n_layers (2 -> 3)")

    resumed = tel("run", str(path), "--run-dir", str(run_dir), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after step 3" in resumed.stdout
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "train/loss" in r] == list(range(1, 9))


def test_fp16_on_a_cpu_is_one_line(tmp_path, tiny_file):
    result = tel(
        "run", str(tiny_file), "--run-dir", str(tmp_path / "run"),
        "--set", "train.precision=fp16", "--set", "train.device=cpu",
    )  # fmt: skip
    assert_one_line_error(result, 'precision = "fp16" needs a CUDA device')


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run"], ["tel run: the following arguments are required: file"]),
        (["runn", "x.toml"], ["invalid choice: 'runn'"]),
        (["plugins", "show", "norm"], ["tel plugins show: the following arguments are required"]),
        # An abbreviation is not taken for the option that deletes a run.
        (["run", "x.toml", "--overwr"], ["unrecognized arguments: --overwr"]),
        (["run", "x.toml", "--res"], ["unrecognized arguments: --res"]),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(capsys, args, fragments):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("tel: error: ") and "--help)" in err
    assert all(fragment in err for fragment in fragments)
