"""The run directory: everything needed to reproduce and compare a run.

runs/<name>/
    config.toml      the resolved experiment; `tel run config.toml` repeats it
    manifest.json    plugins and versions, git revision, hardware, seed, sizes
    metrics.jsonl    one JSON object per line, each with "step"
    tokenizer.json   what the tokenizer learned (e.g. the char vocabulary)
    checkpoints/     latest.pt, best.pt, step_XXXXXXX.pt (see tel_core.train.checkpoint)
    samples.txt      text generated at the end
    probes/          what the probes saw (see tel_core.probes.records)
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from tel_core import ui
from tel_core.config.schema import Experiment, SampleConfig, selections
from tel_core.config.serialise import dump_toml
from tel_core.errors import TelError
from tel_core.probes.records import PROBES_DIR
from tel_core.registry.interfaces import Tokenizer
from tel_core.registry.registry import Registry
from tel_core.version import __version__

PACKAGES = ("torch", "numpy", "pluggy", "attrs", "cattrs", "rich")


#: What a run writes into its directory: all of it goes when a run is replaced.
RUN_FILES = ("config.toml", "manifest.json", "metrics.jsonl", "tokenizer.json", "samples.txt")


def holds_a_run(run_dir: Path) -> bool:
    return (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints" / "latest.pt").exists()


def check_run_dir(run_dir: Path, overwrite: bool = False, resume: bool | Path = False) -> None:
    """Refuse to mix a new run into an old one, or to resume what is not there.

    ``resume`` is True to continue from ``checkpoints/latest.pt``, or a checkpoint's path.
    """
    if resume and overwrite:
        raise TelError("--resume continues a run and --overwrite replaces it: pass only one")
    if resume:
        if resume is True and not (run_dir / "checkpoints" / "latest.pt").is_file():
            raise TelError(f"{run_dir}: nothing to resume (no checkpoints/latest.pt)")
    elif holds_a_run(run_dir) and not overwrite:
        raise TelError(
            f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
            f"replace it, or --run-dir DIR to start a new one elsewhere"
        )


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory (after ``check_run_dir``'s checks), or say why not."""
    if run_dir.exists() and not run_dir.is_dir():
        raise TelError(f"{run_dir} is a file, not a run directory; pass --run-dir DIR")
    with run_dir_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def run_dir_errors(run_dir: Path) -> Iterator[None]:
    """Turn a failure to write the run directory (not a folder, read-only, disk full)
    into one line naming the file."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or run_dir
        raise TelError(f"cannot write the run directory: {where}: {exc.strerror or exc}") from exc


def truncate_probe_records(run_dir: Path, step: int) -> None:
    """Drop the probes' records and images after ``step`` (a resumed run trains those
    steps again)."""
    for records in (run_dir / PROBES_DIR).glob("*.jsonl"):
        ui.truncate_metrics(records, step)
    for image in (run_dir / PROBES_DIR).glob("**/step_*.png"):
        stem = image.stem.removeprefix("step_")
        if stem.isdigit() and int(stem) > step:
            image.unlink()


def clear_run_dir(run_dir: Path) -> None:
    """Delete the previous run's files and checkpoints (``--overwrite``).

    Called only once the new run is built, so that an experiment that fails to start
    never costs the old run anything. Files that loggers keep in the run directory are
    theirs to replace (see ``tel_core.registry.interfaces.LoggerContext.start_step``).
    """
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(run_dir / PROBES_DIR, ignore_errors=True)


def write_config(run_dir: Path, experiment: Experiment) -> None:
    (run_dir / "config.toml").write_text(dump_toml(experiment), encoding="utf-8")


def git_revision(cwd: Path) -> dict[str, Any] | None:
    """The commit the working directory is at, and whether it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if head.returncode:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(experiment: Experiment, registry: Registry, **facts: Any) -> dict[str, Any]:
    """The manifest: selected plugins with their sources, versions, hardware, and ``facts``."""
    plugins = []
    for kind, key, selection in selections(experiment):
        source = registry.get(kind, selection.name).source
        plugins.append(
            {
                "kind": kind,
                "key": key,
                "name": selection.name,
                "module": source.module,
                "distribution": source.distribution,
                "version": source.version,
            }
        )
    return {
        "name": experiment.name,
        "seed": experiment.seed,
        "tel": __version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "plugins": plugins,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git": git_revision(Path.cwd()),
        **facts,
    }


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


class MetricsFile:
    """Appends metric records to metrics.jsonl, flushed per record so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with run_dir_errors(path.parent):
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        with run_dir_errors(self.path.parent):
            ui.write_json_line(self.file, {"step": step, **metrics})
            self.file.flush()

    def close(self) -> None:
        self.file.close()


def start_run_dir(
    run_dir: Path,
    *,
    overwrite: bool,
    resumed_from: int | None,
    experiment: Experiment,
    tokenizer: Tokenizer,
    manifest: dict[str, Any],
) -> MetricsFile:
    """Everything is built: only now replace the old run (``--overwrite``) or trim a
    resumed one (the steps after its checkpoint are trained again), then write the run's
    files. Returns metrics.jsonl, open for the loop's records."""
    with run_dir_errors(run_dir):
        if overwrite:
            clear_run_dir(run_dir)
        if resumed_from is not None:
            ui.truncate_metrics(run_dir / "metrics.jsonl", resumed_from)
            truncate_probe_records(run_dir, resumed_from)
        (run_dir / "tokenizer.json").write_text(
            json.dumps({"name": experiment.data.tokenizer.name, "state": tokenizer.state_dict()})
        )
        write_config(run_dir, experiment)
        write_manifest(run_dir, manifest)
        return MetricsFile(run_dir / "metrics.jsonl")


def write_sample(run_dir: Path, step: int, sample: SampleConfig, text: str) -> None:
    """Append a generated sample to samples.txt, with the settings it was drawn with."""
    with run_dir_errors(run_dir), open(run_dir / "samples.txt", "a", encoding="utf-8") as f:
        f.write(
            f"--- step {step}, prompt {sample.prompt!r}, temperature {sample.temperature}, "
            f"top_k {sample.top_k}\n{text}\n"
        )
