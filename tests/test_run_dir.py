"""The run directory is never lost by accident: --overwrite and --resume touch nothing
until the new run has built every component, and loggers' files belong to their run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import pytest

from tel_core import hookimpl
from tel_core.errors import TelError
from tel_core.registry.interfaces import Logger
from tel_core.registry.registry import Registry
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run

from .conftest import TINY

CORPUS = "".join(f"{i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def fail(*args, **kwargs):
    raise TelError("this component cannot be built")


@attrs.frozen
class LrOptions:
    lr: float = 1e-3


class Unbuildable(Logger):
    def __init__(self, options, ctx) -> None:
        fail()

    def log(self, step, metrics) -> None: ...


class FailingPlugin:
    """One component of each kind the loop builds after the data, each failing to build."""

    @hookimpl
    def register_norms(self, register):
        register("unbuildable", fail)

    @hookimpl
    def register_optimizers(self, register):
        register("unbuildable", fail, options=LrOptions)

    @hookimpl
    def register_schedules(self, register):
        register("unbuildable", fail)

    @hookimpl
    def register_loggers(self, register):
        register("unbuildable", Unbuildable)


#: Ways for a new run to fail while it is being built, latest last.
FAILURES = {
    "dataset": {"data": {"dataset": {"name": "text", "paths": ["gone.txt"]}}},
    "norm": {"model": {"norm": "unbuildable"}},
    "optimizer": {"optimizer": {"name": "unbuildable"}},
    "schedule": {"schedule": {"name": "unbuildable"}},
    "logger": {"loggers": [{"name": "unbuildable"}]},
    "logger path": {"loggers": [{"name": "json", "path": "metrics.jsonl/x"}]},
    # A logger that opens its file in the run directory, then one that fails.
    "second logger": {"loggers": [{"name": "json", "path": "log.jsonl"}, {"name": "unbuildable"}]},
}


def with_change(tiny: dict, change: dict) -> dict:
    changed = json.loads(json.dumps(tiny))
    for key, value in change.items():
        if isinstance(value, dict) and "name" not in value:  # a section: change its keys
            changed[key] = {**changed[key], **value}
        else:
            changed[key] = value
    return changed


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run with a JSON log in its directory (trained once for the module)."""
    directory = tmp_path_factory.mktemp("finished")
    (directory / "corpus.txt").write_text(CORPUS)
    tiny = json.loads(json.dumps(TINY))
    tiny["data"]["dataset"]["paths"] = [str(directory / "corpus.txt")]
    tiny["train"].update(checkpoint_every=2, keep_last=5)
    tiny["loggers"] = [{"name": "json", "path": "log.jsonl"}]
    registry = Registry()
    registry.load_entry_points()
    run(experiment_from_dict(tiny, registry), directory / "run", registry)
    return directory / "run"


@pytest.fixture
def old_run(finished_run, tmp_path, registry, tiny) -> Path:
    """A copy of the finished run, the experiment that made it in ``tiny``, and a plugin
    whose parts fail to build in ``registry``."""
    registry.add_plugin(FailingPlugin(), name="failing")
    tiny["data"]["dataset"]["paths"] = [str(finished_run.parent / "corpus.txt")]
    tiny["train"].update(checkpoint_every=2, keep_last=5)
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.mark.parametrize("stage", FAILURES)
def test_overwrite_deletes_nothing_when_the_new_run_fails_to_build(old_run, registry, tiny, stage):
    before = snapshot(old_run)
    assert {"checkpoints/latest.pt", "samples.txt", "log.jsonl"} <= set(before)
    experiment = experiment_from_dict(with_change(tiny, FAILURES[stage]), registry)
    with pytest.raises(TelError) as error:
        run(experiment, old_run, registry, overwrite=True)
    assert "\n" not in str(error.value)
    assert snapshot(old_run) == before


@pytest.mark.parametrize("stage", ["logger", "logger path", "second logger"])
def test_resume_touches_nothing_when_it_fails_to_build(old_run, registry, tiny, stage):
    checkpoints = old_run / "checkpoints"
    # As if killed after step 6 with its last checkpoint from step 2: records 3-6 would go.
    (checkpoints / "step_0000002.pt").replace(checkpoints / "latest.pt")
    before = snapshot(old_run)
    changed = with_change(tiny, FAILURES[stage])
    with pytest.raises(TelError):
        run(experiment_from_dict(changed, registry), old_run, registry, resume=True)
    assert snapshot(old_run) == before


def log_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_an_overwritten_run_starts_its_json_log_afresh(old_run, registry, tiny):
    tiny["loggers"] = [{"name": "json", "path": "log.jsonl", "text": False}]
    tiny["train"]["max_steps"] = 3
    run(experiment_from_dict(tiny, registry), old_run, registry, overwrite=True)
    assert log_steps(old_run / "log.jsonl") == [1, 2, 3, 3]  # 3 train lines, 1 eval line


def test_a_resumed_run_drops_json_log_records_after_its_checkpoint(old_run, registry, tiny):
    checkpoints = old_run / "checkpoints"
    (checkpoints / "step_0000004.pt").replace(checkpoints / "latest.pt")
    tiny["loggers"] = [{"name": "json", "path": "log.jsonl", "text": False}]
    run(experiment_from_dict(tiny, registry), old_run, registry, resume=True)
    records = [json.loads(line) for line in (old_run / "log.jsonl").read_text().splitlines()]
    train = [r["step"] for r in records if "train/loss" in r]
    assert train == [1, 2, 3, 4, 5, 6]  # each step once: 5 and 6 were trained again
    assert not any("text/sample" in r for r in records)  # the first run's, at step 6, went


def test_a_json_log_outside_the_run_directory_is_appended_to(tmp_path, registry, tiny):
    shared = tmp_path / "all-runs.jsonl"
    tiny["loggers"] = [{"name": "json", "path": str(shared), "text": False}]
    run(experiment_from_dict(tiny, registry), tmp_path / "a", registry)
    run(experiment_from_dict(tiny, registry), tmp_path / "a", registry, overwrite=True)
    assert log_steps(shared) == 2 * [1, 2, 3, 3, 4, 5, 6, 6]


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path, registry, tiny):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(TelError, match=r"file is a file, not a run directory; pass --run-dir"):
        run(experiment_from_dict(tiny, registry), tmp_path / "file", registry)
    with pytest.raises(TelError, match=r"cannot write the run directory: .*file/run: Not a dir"):
        run(experiment_from_dict(tiny, registry), tmp_path / "file" / "run", registry)


def test_a_checkpoint_that_cannot_be_written_is_one_line(tmp_path, registry, tiny):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("in the way")
    with pytest.raises(TelError, match=r"cannot write the checkpoint .*latest\.pt: "):
        run(experiment_from_dict(tiny, registry), tmp_path / "run", registry)
