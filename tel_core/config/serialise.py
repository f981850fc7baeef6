"""Writing experiments: as plain data (TOML- and JSON-ready) and as TOML.

The run directory's ``config.toml``, a checkpoint's ``config``, the token cache's key and
``tel plugins``' defaults are all this one function's output, so they never disagree.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import attrs
import tomli_w

from tel_core.config.schema import Experiment, Selection


def to_dict(obj: Any, keep_none: bool = False) -> Any:
    """Plain TOML- and JSON-ready data for an experiment (or any part of one, or any attrs
    object): tuples become lists, paths strings. None is left out (TOML has no null)
    unless ``keep_none``."""
    if isinstance(obj, Selection):
        return {"name": obj.name, **to_dict(obj.options, keep_none)}
    if attrs.has(type(obj)):
        return {
            f.name: to_dict(value, keep_none)
            for f in attrs.fields(type(obj))
            if (value := getattr(obj, f.name)) is not None or keep_none
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(item, keep_none) for item in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v, keep_none) for k, v in obj.items()}
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def dump_toml(experiment: Experiment) -> str:
    """The resolved experiment as TOML that ``tel run`` accepts as is."""
    return tomli_w.dumps(to_dict(experiment))
