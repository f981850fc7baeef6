"""Loading a trained model from its run directory alone.

``load_run("runs/rope")`` reads ``config.toml`` (the resolved experiment), ``tokenizer.json``
(what the tokenizer learned), ``manifest.json`` (which distribution each plugin came from)
and a checkpoint, builds the model through the registry exactly as training did, and
loads the weights with ``weights_only=True``. It needs neither the experiment file nor
the data set. The same call reads a directory written by ``tel export --format
safetensors`` (``tel.json`` and ``model.safetensors``).

A checkpoint is named as on the command line: ``best``, ``latest``, ``step:N`` (the
snapshot ``checkpoints/step_000000N.pt``) or the path of a checkpoint file. By default
``best``, or ``latest`` for a run stopped before its first evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core.config.loader import Layer, file_layers, override_layers, structure
from tel_core.config.schema import Experiment
from tel_core.config.serialise import to_dict
from tel_core.errors import ConfigError, TelError, require
from tel_core.model.decoder import LanguageModel, build_model
from tel_core.registry.interfaces import Tokenizer
from tel_core.registry.registry import Registry, default_registry
from tel_core.train.checkpoint import STEP_FILE, config_differences, load_checkpoint, step_file
from tel_core.train.device import resolve_device
from tel_core.train.experiment import check_experiment
from tel_core.train.precision import Precision

#: Written by ``tel export --format safetensors`` beside ``model.safetensors``.
EXPORT_FILE = "tel.json"
EXPORT_WEIGHTS = "model.safetensors"


@attrs.frozen
class LoadedRun:
    """A trained model, ready to use, and what it was loaded from."""

    run_dir: Path
    experiment: Experiment
    model: LanguageModel  # in eval mode, on ``device``
    tokenizer: Tokenizer
    #: Which checkpoint: "best", "latest", "step_0000300", or a file's name for a path.
    checkpoint: str
    checkpoint_path: Path
    step: int | None  # the optimizer steps the checkpoint had taken
    val_loss: float | None  # the val/loss logged at that step, if it was evaluated
    manifest: Mapping[str, Any]
    device: torch.device
    precision: Precision
    registry: Registry

    @property
    def block_size(self) -> int:
        """The longest context the model was built for (the trained one, or more)."""
        return self.model.block_size

    @property
    def trained_block_size(self) -> int:
        return self.experiment.data.block_size

    def encode(self, text: str) -> list[int]:
        """``text`` as token ids; a text the tokenizer cannot encode is one line."""
        try:
            ids = [int(i) for i in self.tokenizer.encode(text)]
        except TelError:
            raise
        except Exception as exc:  # a tokenizer plugin that raises something else
            raise TelError(
                f"tokenizer {self.experiment.data.tokenizer.name!r} cannot encode {text!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        bad = [i for i in ids if not 0 <= i < self.model.vocab_size]
        if bad:
            raise TelError(
                f"tokenizer {self.experiment.data.tokenizer.name!r} gave id {bad[0]} for "
                f"{text!r}, outside the model's vocabulary of {self.model.vocab_size}"
            )
        return ids


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    *,
    block_size: int | None = None,
    data_overrides: Iterable[str] = (),
    device: str | torch.device = "auto",
    registry: Registry | None = None,
) -> LoadedRun:
    """Rebuild a trained model from ``run_dir`` (a run directory or a safetensors export).

    ``checkpoint``: ``best``, ``latest``, ``step:N`` or a path (default: best, else latest).
    ``block_size``: build the model for longer sequences than it was trained on (an
    encoding with weights per position, such as ``learned``, cannot; that is one line).
    ``data_overrides``: ``data.KEY=VALUE`` items changing the ``[data]`` table (another
    dataset for evaluation; the run's tokenizer stays). Every mistake is a ``TelError``.
    """
    run_dir = Path(run_dir)
    registry = registry or default_registry()
    data_overrides = list(data_overrides)
    check_data_overrides(data_overrides)
    if (run_dir / EXPORT_FILE).is_file():
        if checkpoint is not None:
            raise TelError(f"{run_dir} is an export of one checkpoint: leave out --checkpoint")
        return _load_export(run_dir, block_size, data_overrides, device, registry)
    if not (run_dir / "config.toml").is_file():
        what = "does not exist" if not run_dir.exists() else "has no config.toml"
        raise TelError(f"{run_dir} {what}: not a tel run directory")
    manifest = _read_json(run_dir / "manifest.json", required=False)
    check_plugins_installed(manifest.get("plugins", []), registry, run_dir)
    layers = [
        *file_layers(run_dir / "config.toml"),
        _NO_LOGGERS,
        *override_layers(data_overrides),
    ]
    experiment = structure(layers, registry, check_experiment)
    path, label = resolve_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    check_same_model(state.get("config", {}), experiment, path, run_dir)
    tokenizer = _tokenizer(experiment, registry, _read_json(run_dir / "tokenizer.json"), run_dir)
    model = _model(experiment, tokenizer, state["model"], block_size, registry, path)
    step = state.get("step")
    return _loaded(
        run_dir,
        experiment,
        model,
        tokenizer,
        label,
        path,
        step,
        _val_loss(run_dir, step, state, label),
        manifest,
        device,
        registry,
    )


#: Loggers watch a training run; using a trained model needs none of them (and a logger
#: plugin that is no longer installed must not stand in the way).
_NO_LOGGERS = Layer("(loading a run: no loggers)", {"loggers": []})


def check_data_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("data.") or key.startswith(("data.tokenizer", "data.block_size")):
            raise ConfigError(
                f"--set {item!r}: only keys of [data] other than tokenizer and block_size may "
                f"change here (the model keeps the run's tokenizer; use --block-size for length)"
            )


def resolve_checkpoint(run_dir: Path, spec: str | Path | None) -> tuple[Path, str]:
    """The checkpoint file ``spec`` names, and a short label for it."""
    directory = run_dir / "checkpoints"
    present = available_checkpoints(run_dir)
    named = spec is None or spec in ("best", "latest") or str(spec).startswith("step:")
    if not named:
        path = Path(spec)
        if path.is_file():
            inside = path.resolve().parent == directory.resolve()
            return path, path.stem if inside else f"{path.parent.parent.name}-{path.stem}"
        if isinstance(spec, Path) or path.suffix == ".pt" or len(path.parts) > 1:
            raise TelError(f"--checkpoint {spec}: no such file")
        has = f"; {run_dir} has {', '.join(present)}" if present else ""
        raise TelError(
            f"unknown --checkpoint {spec!r}: give best, latest, step:N or the path of a "
            f"checkpoint file{has}"
        )
    if not present:
        raise TelError(
            f"{run_dir} has no checkpoint (nothing in {directory}): train it first with "
            f"tel run, or name a checkpoint file with --checkpoint PATH"
        )
    if spec is None:
        spec = "best" if "best" in present else "latest"
    if spec in ("best", "latest"):
        name = f"{spec}.pt"
    elif spec[5:].isdigit():
        name = step_file(int(spec[5:]))
    else:
        raise TelError(
            f"--checkpoint {spec!r}: N in step:N must be a number of steps, e.g. step:300"
        )
    path = directory / name
    if not path.is_file():
        raise TelError(f"{run_dir} has no checkpoint {spec} ({path}); it has {', '.join(present)}")
    return path, path.stem


def available_checkpoints(run_dir: Path) -> list[str]:
    """The checkpoints of a run as ``--checkpoint`` names them: best, latest, step:N."""
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return []
    names = [n for n in ("best", "latest") if (directory / f"{n}.pt").is_file()]
    steps = sorted(int(m.group(1)) for p in directory.iterdir() if (m := STEP_FILE.match(p.name)))
    return names + [f"step:{s}" for s in steps]


def check_plugins_installed(
    plugins: Iterable[Mapping[str, Any]], registry: Registry, run_dir: Path
) -> None:
    """One line naming the first plugin component the run used that is not installed now,
    with the distribution and version that the manifest says it came from."""
    for entry in plugins:
        kind, name = entry.get("kind"), entry.get("name")
        if kind == "logger" or kind is None or name in registry.components(kind):
            continue
        dist, version = entry.get("distribution"), entry.get("version")
        if dist:
            source = f"from {dist} {version}" if version else f"from {dist}"
            hint = f"; install it (pip install '{dist}=={version}')" if version else ""
        else:
            source, hint = f"(module {entry.get('module')}, not from an installed package)", ""
        broken = [b.plugin for b in registry.broken]
        failed = f" (plugins that failed to load here: {', '.join(broken)})" if broken else ""
        raise TelError(
            f"{run_dir} was trained with {kind} {name!r} {source}, which is not installed "
            f"here{hint}{failed}"
        )


def check_same_model(
    saved: Mapping[str, Any], experiment: Experiment, path: Path, run_dir: Path
) -> None:
    """A checkpoint of another architecture (or tokenizer) is refused in one line."""
    current = to_dict(experiment)
    differences = config_differences(saved, current, ("model",))
    saved_tokenizer = saved.get("data", {}).get("tokenizer")
    if saved_tokenizer is not None and saved_tokenizer != current["data"]["tokenizer"]:
        differences.append(
            f"data.tokenizer ({saved_tokenizer!r} -> {current['data']['tokenizer']!r})"
        )
    if differences:
        raise TelError(
            f"{path} holds another model than {run_dir / 'config.toml'} describes (a checkpoint "
            f"of another run?): {', '.join(differences)}"
        )


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise TelError(f"{path}: missing; the run directory is incomplete")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TelError(f"{path}: expected a JSON object")
    return data


def _tokenizer(
    experiment: Experiment, registry: Registry, saved: Mapping[str, Any], where: Path
) -> Tokenizer:
    selection = experiment.data.tokenizer
    if saved.get("name", selection.name) != selection.name:
        raise TelError(
            f"{where}: tokenizer.json holds tokenizer {saved.get('name')!r}, but the config "
            f"selects {selection.name!r}"
        )
    tokenizer = registry.build("tokenizer", selection)
    tokenizer.load_state_dict(saved.get("state", {}))
    return tokenizer


def _model(
    experiment: Experiment,
    tokenizer: Tokenizer,
    weights: Mapping[str, torch.Tensor],
    block_size: int | None,
    registry: Registry,
    source: Path,
) -> LanguageModel:
    trained = experiment.data.block_size
    if block_size is not None and block_size < 1:
        raise TelError(f"--block-size must be at least 1, got {block_size}")
    # Shorter contexts need no other model: the trained one takes any length up to its own.
    size = max(block_size or trained, trained)
    model = build_model(experiment.model, tokenizer.vocab_size, size, registry)
    expected = model.state_dict()
    if size != trained:
        resized = [
            k
            for k, w in weights.items()
            if k in expected and tuple(w.shape) != tuple(expected[k].shape)
        ]
        if resized:
            kind, name = _component_of(resized[0], experiment)
            raise TelError(
                f"--block-size {size}: {kind} {name!r} has weights for the trained block_size "
                f"{trained} only ({resized[0]}: {tuple(weights[resized[0]].shape)}), so it "
                f"cannot run on longer sequences (learned positions do not extrapolate)"
            )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise TelError(f"{source}: its weights do not fit the run's model: {detail}") from None
    return model.eval()


def _component_of(key: str, experiment: Experiment) -> tuple[str, str]:
    """Which component a state-dict key belongs to, for error messages."""
    model = experiment.model
    parts = key.split(".")
    if parts[0] == "positional":
        return "positional", model.positional.name
    if len(parts) > 2 and parts[0] == "blocks":
        if parts[2] == "attn":
            return "attention", model.attention.name
        if parts[2] == "ffn":
            return "ffn", model.ffn.name
        return "norm", model.norm.name
    return "model part", parts[0]


def _val_loss(
    run_dir: Path, step: int | None, state: Mapping[str, Any], label: str
) -> float | None:
    """The val/loss logged at the checkpoint's step, from metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if step is not None and path.is_file():
        for line in reversed(path.read_text(encoding="utf-8").splitlines()):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step") == step and record.get("val/loss") is not None:
                return float(record["val/loss"])
    best = state.get("best_val_loss")
    if label == "best" and isinstance(best, float) and best != float("inf"):
        return best
    return None


def _loaded(
    run_dir: Path,
    experiment: Experiment,
    model: LanguageModel,
    tokenizer: Tokenizer,
    label: str,
    path: Path,
    step: int | None,
    val_loss: float | None,
    manifest: Mapping[str, Any],
    device: str | torch.device,
    registry: Registry,
) -> LoadedRun:
    device = device if isinstance(device, torch.device) else resolve_device(device)
    # The run's own precision settings, so that evaluating it reproduces what training
    # logged: the auto rule sees the same width and compile setting, and a run trained
    # with tf32 = false is evaluated without TF32 (the setting is process-wide).
    train = experiment.train
    shape = (experiment.model.d_model, train.compile)
    try:
        precision = Precision(train.precision, device, *shape, tf32=train.tf32)
    except ConfigError:  # fp16 training on a GPU, used here on a CPU: compute in float32
        precision = Precision("fp32", device, *shape, tf32=train.tf32)
    return LoadedRun(
        run_dir,
        experiment,
        model.to(device),
        tokenizer,
        label,
        path,
        step,
        val_loss,
        manifest,
        device,
        precision,
        registry,
    )


def _load_export(
    directory: Path,
    block_size: int | None,
    data_overrides: list[str],
    device: str | torch.device,
    registry: Registry,
) -> LoadedRun:
    """A ``tel export --format safetensors`` directory, loaded like a run."""
    require("safetensors", "reading an export")
    from safetensors.torch import load_file  # the hf extra; only exports need it

    info = _read_json(directory / EXPORT_FILE)
    check_plugins_installed(info.get("plugins", []), registry, directory)
    layers = [
        Layer(str(directory / EXPORT_FILE), info["config"]),
        _NO_LOGGERS,
        *override_layers(data_overrides),
    ]
    experiment = structure(layers, registry, check_experiment)
    weights_path = directory / EXPORT_WEIGHTS
    if not weights_path.is_file():
        raise TelError(f"{weights_path}: missing; the export is incomplete")
    weights = load_file(str(weights_path))
    if experiment.model.tie_embeddings:  # written once: the LM head is the embedding
        weights.setdefault("lm_head.weight", weights["token_embedding.weight"])
    tokenizer = _tokenizer(experiment, registry, info["tokenizer"], directory)
    model = _model(experiment, tokenizer, weights, block_size, registry, weights_path)
    checkpoint = info.get("checkpoint", {})
    return _loaded(
        directory,
        experiment,
        model,
        tokenizer,
        checkpoint.get("label", "export"),
        weights_path,
        checkpoint.get("step"),
        checkpoint.get("val_loss"),
        info,
        device,
        registry,
    )
