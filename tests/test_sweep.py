"""`tel sweep`: plans from sweep files and folders, resumable runs, executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from tel_core.cli import main
from tel_core.errors import ConfigError
from tel_core.sweep import SlurmOptions, load_plan, run_sweep
from tel_core.sweep.local import LocalExecutor

from .conftest import ROOT
from .test_cli import assert_one_line_error, tel


@pytest.fixture
def experiment(tmp_path, tiny) -> Path:
    tiny["train"].update(max_steps=6, eval_every=3, eval_batches=1)
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(tiny))
    return path


def sweep_file(tmp_path: Path, **body) -> Path:
    body.setdefault("experiment", "tiny.toml")
    path = tmp_path / "grid.toml"
    path.write_text(tomli_w.dumps(body))
    return path


def statuses(directory: Path) -> dict[str, str]:
    sweep = json.loads((directory / "sweep.json").read_text())
    return {entry["key"]: entry["status"] for entry in sweep["runs"]}


def train_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "train/tokens" in r]


def test_a_grid_is_the_cartesian_product_over_seeds(tmp_path, experiment):
    path = sweep_file(
        tmp_path,
        name="g",
        seeds=[3, 4],
        set={"train.max_steps": 5},
        grid={"optimizer.lr": [1e-3, 3e-3], "train.batch_size": [4, 8]},
    )
    plan = load_plan(path, runs_root=tmp_path / "runs")
    assert plan.members == (
        "lr=0.001,batch_size=4",
        "lr=0.001,batch_size=8",
        "lr=0.003,batch_size=4",
        "lr=0.003,batch_size=8",
    )
    assert len(plan.runs) == 8 and {r.seed for r in plan.runs} == {3, 4}
    run = plan.runs[0]
    assert run.run_dir == tmp_path / "runs" / "g" / "lr=0.001,batch_size=4" / "seed-3"
    assert run.overrides == ("train.max_steps=5", "optimizer.lr=0.001", "train.batch_size=4")
    assert run.max_steps == 5
    assert run.shown().startswith(f"tel run {experiment} --set train.max_steps=5 ")
    assert run.shown("resume").endswith("--resume")
    # The command line's seeds and overrides win; a grid key cannot be overridden.
    other = load_plan(path, [9], ["train.max_steps=7"], tmp_path / "runs")
    assert {r.seed for r in other.runs} == {9} and other.runs[0].max_steps == 7
    with pytest.raises(ConfigError, match=r"optimizer\.lr is a grid key"):
        load_plan(path, overrides=["optimizer.lr=1"])


def test_a_folder_is_a_sweep_of_its_files_with_their_own_seeds(tmp_path, tiny):
    family = tmp_path / "family"
    family.mkdir()
    for name, positional in (("rope", "rope"), ("alibi", "alibi")):
        tiny["model"]["positional"] = {"name": positional}
        (family / f"{name}.toml").write_text(tomli_w.dumps(tiny))
    plan = load_plan(family, runs_root=tmp_path / "runs")
    assert plan.name == "family" and plan.members == ("alibi", "rope")
    assert [r.seed for r in plan.runs] == [tiny["seed"]] * 2
    assert plan.runs[0].run_dir == tmp_path / "runs" / "family" / "alibi" / f"seed-{tiny['seed']}"


def test_sweep_files_say_what_is_wrong(tmp_path, experiment):
    with pytest.raises(ConfigError, match="unknown key 'grids'"):
        load_plan(sweep_file(tmp_path, grids={}))
    with pytest.raises(ConfigError, match=r"\[grid\] optimizer.lr: expected a non-empty array"):
        load_plan(sweep_file(tmp_path, grid={"optimizer.lr": 0.1}))
    with pytest.raises(ConfigError, match="seeds must be a non-empty array of integers"):
        load_plan(sweep_file(tmp_path, seeds=["a"]))
    with pytest.raises(ConfigError, match="is an experiment file, not a sweep file"):
        load_plan(experiment)
    with pytest.raises(ConfigError, match="no such experiment file or folder"):
        load_plan(sweep_file(tmp_path, experiment="nowhere.toml"))
    # A member's experiment is checked before anything trains.
    with pytest.raises(ConfigError, match="lrr"):
        load_plan(sweep_file(tmp_path, grid={"optimizer.lrr": [1.0]}))
    assert_one_line_error(tel("sweep", str(tmp_path / "grid.toml"), "--seeds", "1,x"), "--seeds")


def test_jobs_divide_the_threads_and_hand_out_the_gpus(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    executor = LocalExecutor(jobs=4)
    assert executor.threads == 2
    assert [executor.environment(slot)["CUDA_VISIBLE_DEVICES"] for slot in range(4)] == [
        "2",
        "5",
        "2",
        "5",
    ]
    assert executor.environment(0)["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one GPU: every run shares it
    assert "CUDA_VISIBLE_DEVICES" not in {
        k for k, v in LocalExecutor(2).environment(1).items() if v != os.environ.get(k)
    }


def test_a_failed_member_never_stops_the_others(tmp_path, tiny, capsys):
    family = tmp_path / "family"
    family.mkdir()
    tiny["loggers"] = []
    (family / "good.toml").write_text(tomli_w.dumps(tiny))
    tiny["data"]["block_size"] = 100_000  # longer than the text: fails once training starts
    (family / "bad.toml").write_text(tomli_w.dumps(tiny))
    runs = tmp_path / "runs"
    code = main(["sweep", str(family), "--runs-dir", str(runs), "--set", "train.max_steps=4"])
    assert code == 1
    seed = tiny["seed"]
    assert statuses(runs / "family") == {f"bad/seed-{seed}": "failed", f"good/seed-{seed}": "done"}
    sweep = json.loads((runs / "family" / "sweep.json").read_text())
    assert "fewer than block_size + 1" in sweep["runs"][0]["error"]
    assert "95% CI" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_stops_every_member_with_a_checkpoint_and_a_rerun_finishes_the_rest(
    tmp_path, experiment, capsys
):
    # Steps slow enough to be caught mid-run: batch 64, 200 steps each.
    path = sweep_file(
        tmp_path,
        name="lr",
        seeds=[1, 2],
        set={"train.max_steps": 200, "train.batch_size": 64, "train.eval_every": 50},
        grid={"optimizer.lr": [1e-3, 3e-3]},
    )
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "tel_core", "sweep", str(path), "--jobs", "2"]
    command += ["--runs-dir", str(runs)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    first = [runs / "lr" / "lr=0.001" / f"seed-{s}" for s in (1, 2)]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until both running members are training
        if all((d / "metrics.jsonl").is_file() and len(train_steps(d)) >= 5 for d in first):
            break
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 130, out
    assert statuses(runs / "lr") == {
        "lr=0.001/seed-1": "stopped",
        "lr=0.001/seed-2": "stopped",
        "lr=0.003/seed-1": "pending",
        "lr=0.003/seed-2": "pending",
    }
    for d in first:
        assert (d / "checkpoints" / "latest.pt").is_file()
        assert "stopped by SIGINT" in (d / "sweep.log").read_text()
    stopped_at = [max(train_steps(d)) for d in first]
    assert all(s < 200 for s in stopped_at)

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert set(statuses(runs / "lr").values()) == {"done"}
    for d, step in zip(first, stopped_at, strict=True):
        assert train_steps(d) == list(range(1, 201))  # resumed, not started over
        assert json.loads((d / "manifest.json").read_text())["resumed_from_step"] == step
    assert "val/loss at final, 2 arm(s), baseline lr=0.001" in again.stdout

    finished = runs / "lr" / "lr=0.003" / "seed-1" / "metrics.jsonl"
    mtime = finished.stat().st_mtime_ns
    assert main(["sweep", str(path), "--runs-dir", str(runs)]) == 0
    assert "4 already finished; training 0" in capsys.readouterr().out
    assert finished.stat().st_mtime_ns == mtime  # nothing trained again
    assert main(["sweep", str(path), "--runs-dir", str(runs), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done, skipped") == 4


def test_dry_run_lists_the_runs_and_their_commands(tmp_path, experiment, capsys):
    path = sweep_file(tmp_path, seeds=[1, 2], grid={"optimizer.lr": [1e-3, 3e-3]})
    assert main(["sweep", str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "2 member(s) x seeds 1,2 = 4 runs" in out
    assert out.count("tel run ") == 4
    assert not (tmp_path / "runs").exists()


def test_the_slurm_executor_through_submitits_local_executor(tmp_path, experiment):
    path = sweep_file(tmp_path, name="cluster", seeds=[1], grid={"optimizer.lr": [1e-3]})
    plan = load_plan(path, runs_root=tmp_path / "runs")
    said: list[str] = []
    options = SlurmOptions(cluster="local", time_min=5, partition="gpu", array_parallelism=2)
    result = run_sweep(plan, executor="slurm", slurm=options, say=said.append)
    assert result.counts == {"done": 1}
    entry = json.loads((plan.directory / "sweep.json").read_text())["runs"][0]
    assert entry["status"] == "done" and entry["job_id"]
    assert (plan.directory / "slurm").is_dir()  # submitit's job files
    assert "SLURM job array on partition gpu (local)" in said[0]
    # Collected again, nothing is resubmitted.
    assert run_sweep(plan, executor="slurm", slurm=options, say=said.append).trained == 0


def test_runs_still_queued_on_slurm_are_not_submitted_twice(tmp_path, experiment, monkeypatch):
    from tel_core.errors import TelError
    from tel_core.sweep.slurm import SlurmExecutor
    from tel_core.sweep.state import SweepState

    plan = load_plan(sweep_file(tmp_path, name="q", seeds=[1]), runs_root=tmp_path / "runs")
    state = SweepState(plan, "slurm")  # as a killed tel sweep left it
    state.set(plan.runs[0], "running", job_id="4242_0")
    monkeypatch.setattr(SlurmExecutor, "still_queued", lambda self, ids: list(ids))
    with pytest.raises(TelError, match=r"still SLURM jobs \(tiny/seed-1; job 4242_0\)"):
        run_sweep(plan, executor="slurm", slurm=SlurmOptions(cluster="local"))
