"""The shape of an experiment: frozen attrs classes, one per TOML table.

Every key has a default except ``name``, so a small experiment file only says what it
changes (the loader fills in the tables and component names a file leaves out). Fields
marked with ``component(kind, ...)`` select a plugin by name; the plugin's own options
sit beside ``name`` in the same table and are structured into the plugin's options class
(see ``tel_core.config_loader``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs


@attrs.frozen
class Selection:
    """A chosen component: its registered name and its structured options."""

    name: str
    options: Any


def component(kind: str, default: str) -> Any:
    """A field that selects a component of ``kind``; ``default`` names the one used if absent."""
    return attrs.field(metadata={"kind": kind, "default_name": default})


def components(kind: str, defaults: tuple[str, ...]) -> Any:
    """A field holding a list of components of ``kind`` (an array of tables in TOML)."""
    return attrs.field(metadata={"kind": kind, "default_names": defaults, "many": True})


_positive = attrs.validators.gt(0)
_non_negative = attrs.validators.ge(0)
_fraction = attrs.validators.and_(attrs.validators.gt(0.0), attrs.validators.lt(1.0))
_dropout = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.lt(1.0))


@attrs.frozen(kw_only=True)
class DataConfig:
    dataset: Selection = component("dataset", default="stdlib")
    tokenizer: Selection = component("tokenizer", default="byte")
    block_size: int = attrs.field(default=128, validator=_positive)
    val_fraction: float = attrs.field(default=0.1, validator=_fraction)


@attrs.frozen(kw_only=True)
class ModelConfig:
    d_model: int = attrs.field(default=128, validator=_positive)
    n_layers: int = attrs.field(default=4, validator=_positive)
    n_heads: int = attrs.field(default=4, validator=_positive)
    dropout: float = attrs.field(default=0.0, validator=_dropout)
    bias: bool = True  # biases in linear layers
    tie_embeddings: bool = True  # the LM head shares the token embedding's weights
    norm_placement: Literal["pre", "post", "sandwich"] = "pre"
    attention: Selection = component("attention", default="causal")
    positional: Selection = component("positional", default="learned")
    norm: Selection = component("norm", default="layernorm")
    ffn: Selection = component("ffn", default="mlp")

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")


@attrs.frozen
class TrainConfig:
    batch_size: int = attrs.field(default=16, validator=_positive)  # sequences per step
    micro_batch_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    max_steps: int = attrs.field(default=500, validator=_positive)
    eval_every: int = attrs.field(default=100, validator=_positive)
    eval_batches: int = attrs.field(default=20, validator=_positive)
    grad_clip: float = attrs.field(default=1.0, validator=_non_negative)  # 0 = off
    log_every: int = attrs.field(default=1, validator=_positive)
    device: str = "auto"  # "auto": cuda when present, else cpu

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.micro_size:
            raise ValueError(
                f"micro_batch_size ({self.micro_size}) must divide batch_size ({self.batch_size})"
            )

    @property
    def micro_size(self) -> int:
        return self.micro_batch_size or self.batch_size

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_size


@attrs.frozen
class SampleConfig:
    """The text generated at the end of a run."""

    prompt: str = "\n"
    max_new_tokens: int = attrs.field(default=256, validator=_non_negative)
    temperature: float = attrs.field(default=0.8, validator=_positive)
    top_k: int = attrs.field(default=50, validator=_non_negative)  # 0 = no cut-off


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _run_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} must be letters, digits, '.', '_' or '-' (it names the run "
            f"directory), got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Experiment:
    name: str = attrs.field(validator=_run_name)
    seed: int = 1337
    data: DataConfig
    model: ModelConfig
    optimizer: Selection = component("optimizer", default="adamw")
    schedule: Selection = component("schedule", default="cosine")
    train: TrainConfig = attrs.field(factory=TrainConfig)
    sample: SampleConfig = attrs.field(factory=SampleConfig)
    loggers: tuple[Selection, ...] = components("logger", defaults=("console",))


#: Top-level keys that are not part of the schema but are understood by the loader.
LOADER_KEYS = ("extends",)


def selections(obj: Any, path: str = "") -> list[tuple[str, str, Selection]]:
    """Every component an experiment selects, as (kind, dotted key, selection)."""
    found = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        key = f"{path}{field.name}"
        kind = field.metadata.get("kind")
        if kind and field.metadata.get("many"):
            found += [(kind, f"{key}.{i}", item) for i, item in enumerate(value)]
        elif kind:
            found.append((kind, key, value))
        elif attrs.has(type(value)):
            found += selections(value, f"{key}.")
    return found
