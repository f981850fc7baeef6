"""Checkpoints: written atomically, read back safely.

A checkpoint is a dict of tensors and plain data saved with ``torch.save`` and loaded with
``weights_only=True``, so loading one never runs code. Writing goes to a temporary file
that is renamed over the old one: a crash mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from tel_core.errors import TelError

FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TelError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted, or not a torch file at all
        raise TelError(
            f"{path}: not a readable tel checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TelError(f"{path}: not a tel checkpoint of format {FORMAT}")
    return state
