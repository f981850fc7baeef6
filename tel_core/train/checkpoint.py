"""Checkpoints: written atomically, read back safely, and checked before a resume.

A checkpoint is a dict of tensors and plain data saved with ``torch.save`` and loaded with
``weights_only=True``, so loading one never runs code. Writing goes to a temporary file
that is renamed over the old one: a crash mid-write leaves the previous checkpoint whole.

A run directory's ``checkpoints/`` holds ``latest.pt`` (the newest state, the one
``--resume`` continues from), ``best.pt`` (lowest validation loss) and, with
``checkpoint_every``, ``step_XXXXXXX.pt`` snapshots of which the newest ``keep_last``
are kept. Each holds everything needed to continue exactly: model, optimizer, gradient
scaler, every random generator's state, the data position, the step, the tokens seen,
the best validation loss and the resolved config.

``Checkpoints`` is the policy: which files a step writes, what a checkpoint holds and how
a run continues from one (``resume_checkpoint`` finds and checks the one to continue from).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core.config.schema import Experiment, TrainConfig
from tel_core.config.serialise import to_dict
from tel_core.errors import ConfigError, TelError, one_line
from tel_core.train.distributed import Distributed
from tel_core.train.rng import rng_state, set_rng_state

FORMAT = 2
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(paths: Sequence[Path], state: dict[str, Any]) -> None:
    """Write ``state`` to every one of ``paths`` (latest.pt, best.pt, ...), serialised once.

    Each file goes to a temporary name first and is renamed over the old one.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # a full disk, a read-only folder: the old file is whole
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            kept = "; the previous one is kept" if path.is_file() else ""
            raise TelError(
                f"cannot write the checkpoint {path}: {exc.strerror or exc}{kept}"
            ) from exc


#: What every checkpoint holds (``Checkpoints.state_dict``), besides its ``format``.
KEYS = (
    "step",
    "model",
    "optimizer",
    "scaler",
    "data",
    "rng",
    "best_val_loss",
    "tokens",
    "elapsed_s",
    "config",
)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, with ``"file"`` (the path it was read from, for messages).

    A file that torch cannot read, whose bytes fail their CRC (damage torch's loader does
    not notice), that is not a tel checkpoint or lacks one of ``KEYS`` is one line naming
    the file; ``--debug`` shows the error behind it.
    """
    if not path.is_file():
        raise TelError(f"{path}: no such checkpoint")
    if damaged := _failed_crc(path):
        raise TelError(
            f"cannot load the checkpoint {path}: it is damaged ({damaged} fails its CRC check)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted, or not a torch file at all
        raise TelError(
            f"cannot load the checkpoint {path}: it is damaged or not a torch file "
            f"({one_line(exc)})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TelError(f"{path}: not a tel checkpoint of format {FORMAT}")
    if missing := [key for key in KEYS if key not in state]:
        raise TelError(f"{path}: an incomplete tel checkpoint (no {', '.join(missing)})")
    shapes = {"step": int, "model": Mapping, "rng": list, "config": Mapping}
    if wrong := [key for key, kind in shapes.items() if not isinstance(state[key], kind)]:
        raise TelError(f"{path}: a damaged tel checkpoint ({', '.join(wrong)} malformed)")
    if not state["rng"]:
        raise TelError(f"{path}: a damaged tel checkpoint (no random generator states)")
    return {**state, "file": str(path)}


def _failed_crc(path: Path) -> str | None:
    """The first record of a checkpoint (a zip archive) whose CRC does not match, if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None  # not even a zip file: torch's loader says what it is


def step_file(step: int) -> str:
    return f"step_{step:07d}.pt"


def prune_step_files(directory: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step snapshots (0 keeps them all)."""
    if keep_last <= 0 or not directory.is_dir():
        return
    steps = sorted(
        (int(m.group(1)), p) for p in directory.iterdir() if (m := STEP_FILE.match(p.name))
    )
    for _, path in steps[:-keep_last]:
        path.unlink(missing_ok=True)


def _flatten(data: Any, prefix: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}"))
        return flat
    return {prefix: data}


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], sections: tuple[str, ...]
) -> list[str]:
    """The dotted keys under ``sections`` whose values differ, as "key (saved -> now)"."""
    differences = []
    for section in sections:
        old = _flatten(saved.get(section, {}), section)
        new = _flatten(current.get(section, {}), section)
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key):
                differences.append(f"{key} ({old.get(key, '-')!r} -> {new.get(key, '-')!r})")
    return differences


#: A resumed run must train the same model on the same data with the same optimizer
#: (whose state the checkpoint restores, options included); the rest (max_steps, the
#: schedule, eval cadence, loggers, ...) may change.
FROZEN_SECTIONS = ("model", "data", "optimizer")
#: ... except the peak learning rate: the loop sets every step's lr from it afresh.
MAY_CHANGE = ("optimizer.lr",)


def check_resumable(checkpoint: Mapping[str, Any], current: Mapping[str, Any], where: Path) -> None:
    """Refuse, in one line naming the keys, to resume with another model, data or optimizer."""
    differences = [
        d
        for d in config_differences(checkpoint["config"], current, FROZEN_SECTIONS)
        if d.split(" ", 1)[0] not in MAY_CHANGE
    ]
    if differences:
        raise ConfigError(
            f"cannot resume {where}: the [model], [data] and [optimizer] sections (but "
            f"optimizer.lr) must match the checkpoint's, but these differ: "
            f"{', '.join(differences)}"
        )


# -- a run's checkpoints: what they hold, and when they are written ----------------------


@attrs.define
class Progress:
    """Where a run stands: saved in every checkpoint beside the components' states."""

    step: int = 0  # optimizer steps taken
    tokens: int = 0  # real (non-padding) target tokens trained on
    best_val_loss: float = math.inf
    elapsed_s: float = 0.0  # wall time of the run so far, across resumes
    checkpoint_step: int | None = None  # the step latest.pt holds

    def kept(self) -> str:
        """What a run that fails now leaves to resume from."""
        if self.checkpoint_step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint (step {self.checkpoint_step}) is kept"


class Checkpoints:
    """A run's ``checkpoints/``: what each holds and which files a step writes.

    ``parts`` are the stateful components, by their key in the checkpoint (``model``,
    ``optimizer``, ``scaler``, ``data``, ``probes``): each has ``state_dict`` and
    ``load_state_dict``. Every process takes part in a save (their random states are
    gathered); rank 0 writes.
    """

    def __init__(
        self,
        directory: Path,
        train: TrainConfig,
        config: dict[str, Any],
        world: Distributed,
        parts: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.train = train
        self.config = config
        self.world = world
        self.parts = parts

    def save(self, step: int, progress: Progress, val_loss: float | None = None) -> None:
        """latest.pt; best.pt at a new best val loss; a step snapshot every checkpoint_every."""
        train = self.train
        if val_loss is not None and not math.isfinite(val_loss):
            raise TelError(
                f"the validation loss became {val_loss} at step {step}; {progress.kept()}"
            )
        names = ["latest.pt"]
        if val_loss is not None and val_loss < progress.best_val_loss:
            progress.best_val_loss = val_loss
            names.append("best.pt")
        if train.checkpoint_every and step % train.checkpoint_every == 0:
            names.append(step_file(step))
        progress.checkpoint_step = step
        state = self.state_dict(step, progress)
        if self.world.is_main:
            save_checkpoint([self.directory / name for name in names], state)
            prune_step_files(self.directory, train.keep_last)

    def state_dict(self, step: int, progress: Progress) -> dict[str, Any]:
        parts = self.parts
        return {
            "step": step,
            "model": parts["model"].state_dict(),
            "optimizer": parts["optimizer"].state_dict(),
            "scaler": parts["scaler"].state_dict(),
            "data": parts["data"].state_dict(),
            "rng": self.world.gather(rng_state()),  # one state per process, by rank
            "best_val_loss": progress.best_val_loss,
            "tokens": progress.tokens,
            "elapsed_s": progress.elapsed_s,
            "config": self.config,
            "probes": parts["probes"].state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> Progress:
        """Restore every part to the exact state after the checkpoint's step; returns where
        the run stands. The caller reseeds a process the checkpoint has no state for."""
        parts = self.parts
        try:
            parts["model"].load_state_dict(state["model"])
            parts["optimizer"].load_state_dict(state["optimizer"])
            parts["scaler"].load_state_dict(state["scaler"])
            parts["data"].load_state_dict(state["data"])
            parts["probes"].load_state_dict(state.get("probes", {}))
            states = state["rng"]
            set_rng_state(states[self.world.rank % len(states)])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            where = state.get("file", "the checkpoint")
            raise TelError(
                f"cannot resume from {where} (step {state['step']}): {one_line(exc)}"
            ) from exc
        return Progress(
            step=state["step"],
            tokens=state["tokens"],
            best_val_loss=state["best_val_loss"],
            elapsed_s=state["elapsed_s"],
            checkpoint_step=state["step"],
        )


def resume_checkpoint(
    run_dir: Path, experiment: Experiment, path: Path | None = None
) -> dict[str, Any]:
    """The checkpoint ``--resume`` continues from (``path``, default the run directory's
    ``checkpoints/latest.pt``), once it is known to fit ``experiment``."""
    state = load_checkpoint(path or run_dir / "checkpoints" / "latest.pt")
    check_resumable(state, to_dict(experiment), run_dir)
    if state["step"] >= experiment.train.max_steps:
        raise TelError(
            f"{run_dir} has already trained {state['step']} of max_steps = "
            f"{experiment.train.max_steps}; raise it to continue (--set train.max_steps=N)"
        )
    return state
