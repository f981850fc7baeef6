"""A sweep file or a folder of experiments -> its members x seeds -> the runs to train.

A sweep file::

    name = "lr-vs-batch"              # default: the file's name
    experiment = "../baseline.toml"   # relative to this file; a folder: one member a file
    seeds = [1337, 1, 2]              # default: each experiment's own seed
    [set]                             # fixed overrides, as --set would give them
    "train.max_steps" = 400
    [grid]                            # the cartesian product of these keys' values
    "optimizer.lr" = [1e-3, 3e-3, 1e-2]
    "train.batch_size" = [8, 16, 32]

A folder of experiment files (``experiments/positional/``) is a sweep whose members are
its files. Members are named from their grid values (``lr=0.003,batch_size=16``) or
their file (``rope``); run ``seed`` of member ``m`` trains into
``runs/<sweep>/<m>/seed-<seed>/``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tel_core.analysis.arms import short_names, show
from tel_core.config.loader import read_toml, tomllib
from tel_core.errors import ConfigError
from tel_core.registry.registry import Registry
from tel_core.train.experiment import load_experiment

SWEEP_KEYS = ("name", "experiment", "seeds", "set", "grid")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.frozen
class SweepRun:
    """One seed of one member: what to train, and where."""

    member: str
    seed: int
    experiment: Path  # the experiment file
    overrides: tuple[str, ...]  # KEY=VALUE, as --set takes them (seed and name aside)
    run_dir: Path
    name: str  # the run's name (a valid experiment name)
    max_steps: int

    @property
    def key(self) -> str:
        """The run's place in the sweep: ``<member>/seed-<seed>``."""
        return f"{self.member}/seed-{self.seed}"

    def arguments(self, action: str = "train") -> list[str]:
        """``tel run``'s arguments; ``action`` resume adds --resume, overwrite --overwrite."""
        args = ["run", str(self.experiment)]
        for item in (*self.overrides, f"seed={self.seed}", f"name={_as_string(self.name)}"):
            args += ["--set", item]
        args += ["--run-dir", str(self.run_dir)]
        if action == "resume":
            args.append("--resume")
        elif action == "overwrite":
            args.append("--overwrite")
        return args

    def argv(self, action: str = "train") -> list[str]:
        """The command that trains it: this Python, ``-m tel_core run ...``."""
        return [sys.executable, "-m", "tel_core", *self.arguments(action)]

    def shown(self, action: str = "train") -> str:
        """The command as a person would type it."""
        return shlex.join(["tel", *self.arguments(action)])


@attrs.frozen
class SweepPlan:
    name: str
    source: Path
    directory: Path  # runs/<name>
    members: tuple[str, ...]
    seeds: tuple[int, ...] | None  # None: each member's own seed
    grid_keys: tuple[str, ...]
    runs: tuple[SweepRun, ...]


def toml_value(value: Any) -> str:
    """A value as TOML text, the way --set reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"a sweep value must be finite, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ConfigError(f"a sweep value must be a number, string, boolean or array, got {value!r}")


def _overrides(key: str, value: Any) -> list[str]:
    """``--set`` items for one key; a table (a component with its options) becomes one
    item per leaf."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _overrides(f"{key}.{k}", v)]
    return [f"{key}={toml_value(value)}"]


def _sweep_file(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    if "experiment" not in data and {"extends", "data", "model", "train"} & set(data):
        raise ConfigError(
            f"{path} is an experiment file, not a sweep file: tel sweep takes a sweep file "
            f"(experiment = ..., [grid]) or a folder of experiment files"
        )
    for key in data:
        if key not in SWEEP_KEYS:
            raise ConfigError(
                f"{path}: unknown key {key!r} in a sweep file; valid keys: {', '.join(SWEEP_KEYS)}"
            )
    if not isinstance(data.get("experiment"), str):
        raise ConfigError(f'{path}: a sweep file needs experiment = "<file or folder>"')
    for table in ("set", "grid"):
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"{path}: [{table}] must be a table of KEY = VALUE")
    for key, values in data.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path} [grid] {key}: expected a non-empty array of values")
    return data


def _experiment_files(path: Path, where: str) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise ConfigError(f"{where}: {path} holds no experiment file (*.toml)")
        return files
    if not path.is_file():
        raise ConfigError(f"{where}: {path}: no such experiment file or folder")
    return [path]


def _seeds(seeds: Any, where: str) -> tuple[int, ...] | None:
    if seeds is None:
        return None
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"{where}: seeds must be a non-empty array of integers, got {seeds!r}")
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"{where}: seeds repeat: {seeds}")
    return tuple(seeds)


def parse_seeds(text: str) -> list[int]:
    """``--seeds 1337,1,2``."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text}: expected integers separated by commas") from None


def safe_name(text: str) -> str:
    """A run name from member and seed: letters, digits, '.', '_', '-'."""
    return _UNSAFE.sub("_", text).strip("_.-") or "run"


def load_plan(
    source: Path,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    runs_root: Path = Path("runs"),
    registry: Registry | None = None,
) -> SweepPlan:
    """Read a sweep file or folder, and check every member's experiment loads.

    ``seeds`` and ``overrides`` (``KEY=VALUE``) are the command line's: they replace the
    file's seeds and come after its ``[set]``; they may not set a grid key.
    """
    source = Path(source)
    if source.is_dir():
        name, files, fixed, grid = source.name, _experiment_files(source, str(source)), {}, {}
        file_seeds = None
    else:
        data = _sweep_file(source)
        name = data.get("name", source.stem)
        files = _experiment_files(source.parent / data["experiment"], f"{source} experiment")
        fixed, grid = data.get("set", {}), data.get("grid", {})
        file_seeds = _seeds(data.get("seeds"), f"{source} seeds")
    if not isinstance(name, str) or safe_name(name) != name:
        raise ConfigError(f"{source}: name must be letters, digits, '.', '_' or '-': {name!r}")
    chosen = _seeds(list(seeds), "--seeds") if seeds else file_seeds
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in grid:
            raise ConfigError(f"--set {item}: {key} is a grid key of {source}; it sweeps it")
        if key in ("seed", "name"):
            raise ConfigError(f"--set {item}: a sweep sets {key} itself (use --seeds)")
    fixed_items = [item for key, value in fixed.items() for item in _overrides(key, value)]
    grid_keys = tuple(grid)
    names = short_names(grid_keys)
    directory = runs_root / name
    runs, members = [], []
    for path, values in itertools.product(files, itertools.product(*grid.values())):
        chosen_values = dict(zip(grid_keys, values, strict=True))
        label = ",".join(f"{names[k]}={_label_value(v)}" for k, v in chosen_values.items())
        member = ",".join(p for p in (path.stem if len(files) > 1 else "", label) if p)
        member = member or path.stem
        items = [
            *fixed_items,
            *(i for k, v in chosen_values.items() for i in _overrides(k, v)),
            *overrides,
        ]
        experiment = load_experiment(path, items, registry=registry)
        members.append(member)
        for seed in chosen or (experiment.seed,):
            runs.append(
                SweepRun(
                    member=member,
                    seed=seed,
                    experiment=path,
                    overrides=tuple(items),
                    run_dir=directory / member.replace("/", "_") / f"seed-{seed}",
                    name=safe_name(f"{name}.{member}.seed-{seed}"),
                    max_steps=experiment.train.max_steps,
                )
            )
    if len(set(members)) < len(members):
        raise ConfigError(f"{source}: two members would share the name of a run directory")
    return SweepPlan(name, source, directory, tuple(members), chosen, grid_keys, tuple(runs))


def _label_value(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", json.dumps(value, sort_keys=True)))
    return show(value)


def _as_string(text: str) -> str:
    """``text`` as --set reads a string: bare, unless TOML would read it as something else."""
    try:
        tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return json.dumps(text)
