"""A damaged checkpoint is one line naming the file and saying what tel was doing;
``--debug`` keeps the error behind it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
import torch

from tel_core.errors import TelError
from tel_core.registry.registry import Registry
from tel_core.train.checkpoint import load_checkpoint
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run

from .conftest import ROOT, TINY

CORPUS = "".join(f"{i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A damage made by loading the checkpoint, changing its state and saving it again."""

    def damage(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)

    return damage


def flip_bytes(path: Path) -> None:
    """Bytes flipped in the middle of the file: torch's loader reads it without a word."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


#: Damage, and what the line must say besides the file's name.
DAMAGES = {
    "truncated": (
        lambda p: p.write_bytes(p.read_bytes()[:1000]),
        "cannot load the checkpoint {path}: it is damaged or not a torch file (RuntimeError: "
        "PytorchStreamReader failed reading zip archive: failed finding central directory)",
    ),
    "text": (
        lambda p: p.write_text("hello\n"),
        "cannot load the checkpoint {path}: it is damaged or not a torch file",
    ),
    "flipped bytes": (flip_bytes, "cannot load the checkpoint {path}: it is damaged ("),
    "not tel's": (
        lambda p: torch.save({"weights": torch.zeros(2)}, p),
        "{path}: not a tel checkpoint of format 2",
    ),
    "no rng": (
        edit(lambda s: s.pop("rng")),
        "{path}: an incomplete tel checkpoint (no rng)",
    ),
    "no rng states": (
        edit(lambda s: s.update(rng=[])),
        "{path}: a damaged tel checkpoint (no random generator states)",
    ),
    "a weight missing": (
        edit(lambda s: s["model"].popitem()),
        "cannot resume from {path} (step 2): RuntimeError: Error(s) in loading state_dict for "
        'LanguageModel: Missing key(s) in state_dict: "lm_head.weight".',
    ),
    "data position": (
        edit(lambda s: s.update(data={})),
        "cannot resume from {path} (step 2): KeyError: 'generator'",
    ),
    "optimizer": (
        edit(lambda s: s["optimizer"].update(param_groups=[])),
        "cannot resume from {path} (step 2): ValueError: loaded state dict has a different "
        "number of parameter groups",
    ),
}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, dict]:
    """A run of 2 of 4 steps (as if stopped), and its experiment, trained once."""
    directory = tmp_path_factory.mktemp("stopped")
    (directory / "corpus.txt").write_text(CORPUS)
    tiny = json.loads(json.dumps(TINY))
    tiny["data"]["dataset"]["paths"] = [str(directory / "corpus.txt")]
    tiny["train"].update(max_steps=2, eval_every=2)
    registry = Registry()
    registry.load_entry_points()
    run(experiment_from_dict(tiny, registry), directory / "run", registry)
    tiny["train"]["max_steps"] = 4
    return directory / "run", tiny


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_one_line_naming_it(stopped, tmp_path, registry, damage):
    source, tiny = stopped
    run_dir = Path(shutil.copytree(source, tmp_path / "run"))
    path = run_dir / "checkpoints" / "latest.pt"
    harm, expected = DAMAGES[damage]
    harm(path)
    with pytest.raises(TelError) as error:
        run(experiment_from_dict(tiny, registry), run_dir, registry, resume=True)
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith(expected.format(path=path)), message


def test_debug_shows_torchs_own_error(stopped, tmp_path):
    source, tiny = stopped
    run_dir = Path(shutil.copytree(source, tmp_path / "run"))
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"PK\x03\x04 cut short")
    experiment = tmp_path / "x.toml"
    experiment.write_text(tomli_w.dumps(tiny))
    command = [sys.executable, "-m", "tel_core", "run", str(experiment), "--run-dir", str(run_dir)]
    plain = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert plain.stderr.startswith("tel: error: cannot load the checkpoint ")
    debug = subprocess.run(
        [sys.executable, "-m", "tel_core", "--debug", *command[3:], "--resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "PytorchStreamReader" in debug.stderr and "Traceback" in debug.stderr
    assert "The above exception was the direct cause" in debug.stderr


def test_a_good_checkpoint_says_where_it_came_from(stopped):
    source, _ = stopped
    state = load_checkpoint(source / "checkpoints" / "latest.pt")
    assert state["file"] == str(source / "checkpoints" / "latest.pt") and state["step"] == 2
