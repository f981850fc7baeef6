"""The shape of an experiment: frozen attrs classes, one per TOML table.

Every key has a default except ``name``, so a small experiment file only says what it
changes (the loader fills in the tables and component names a file leaves out). Fields
marked with ``component(kind, ...)`` select a plugin by name; the plugin's own options
sit beside ``name`` in the same table and are structured into the plugin's options class
(see ``tel_core.config.loader``).
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
    #: How rows are cut from the token stream. "windows": random contiguous windows of
    #: block_size tokens that run across document boundaries (no padding). "pad": one
    #: document a row (a random block_size window of a longer one), padded at the end;
    #: padded targets are ignored by the loss and by every token count.
    batching: Literal["windows", "pad"] = "windows"


@attrs.frozen(kw_only=True)
class ModelConfig:
    d_model: int = attrs.field(default=128, validator=_positive)
    n_layers: int = attrs.field(default=4, validator=_positive)
    n_heads: int = attrs.field(default=4, validator=_positive)
    dropout: float = attrs.field(default=0.0, validator=_dropout)
    bias: bool = True  # biases in linear layers
    tie_embeddings: bool = True  # the LM head shares the token embedding's weights
    norm_placement: Literal["pre", "post", "sandwich"] = "pre"
    #: Round the embedding's and the LM head's rows up to a multiple of this: 64 on a GPU
    #: (GPT-2's 50,257 becomes 50,304) gives the LM head's matrix multiplies aligned
    #: shapes and tensor-core kernels. The extra rows' logits are cut off before the loss
    #: and sampling, so no padded token is ever predicted. 1: no padding.
    vocab_multiple: int = attrs.field(default=1, validator=_positive)
    attention: Selection = component("attention", default="causal")
    positional: Selection = component("positional", default="learned")
    norm: Selection = component("norm", default="layernorm")
    ffn: Selection = component("ffn", default="mlp")

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")


@attrs.frozen
class TrainConfig:
    #: Sequences per optimizer step, over all micro-batches and all processes.
    batch_size: int = attrs.field(default=16, validator=_positive)
    #: Sequences per forward pass on one process (what fits in memory); default: all of
    #: the process's share of batch_size. Gradients accumulate over the micro-batches.
    micro_batch_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    max_steps: int = attrs.field(default=500, validator=_positive)
    eval_every: int = attrs.field(default=100, validator=_positive)
    #: The validation set: this many batches of 16 rows (windows, or padded documents),
    #: drawn once with a fixed seed, whatever the batch_size and the number of processes.
    eval_batches: int = attrs.field(default=20, validator=_positive)
    grad_clip: float = attrs.field(default=1.0, validator=_non_negative)  # 0 = off
    log_every: int = attrs.field(default=1, validator=_positive)
    device: str = "auto"  # "auto": cuda when present, else cpu
    #: "token": the step's loss is the sum of per-token losses over the real (non-padding)
    #: target tokens divided by their number in the whole step, so every token weighs the
    #: same however the step is split. "sequence": the mean of per-sequence mean losses
    #: (tokens of short sequences weigh more: the common mistake, kept to measure it).
    loss_reduction: Literal["token", "sequence"] = "token"
    #: Scale every learning rate the schedule gives by batch_size / reference_batch_size
    #: ("linear") or its square root ("sqrt").
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    reference_batch_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    #: "bf16": bfloat16 autocast (CPU or CUDA); "fp16": float16 autocast with a gradient
    #: scaler (CUDA only); "auto": bf16 where it pays, else fp32 (tel_core.train.precision's
    #: rule: the device, its bf16 arithmetic, the model's width, compile).
    #: Weights, optimizer state and the loss stay float32 in every mode.
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    #: On CUDA, fp32 matrix multiplies use TF32 tensor cores (Ampere on; inputs rounded to
    #: 10 mantissa bits, float32 accumulation). false: full fp32. No effect on a CPU.
    tf32: bool = True
    #: torch.compile the model (on CPU this needs a C++ compiler; the first steps are slow).
    compile: bool = False
    #: Recompute each block's activations in the backward pass instead of storing them:
    #: less memory, more compute (the backward pass runs each block forward again).
    activation_checkpointing: bool = False
    #: A non-finite loss or gradient norm: "stop" the run (the last good checkpoint is
    #: kept), or "skip" the step's update and go on.
    nonfinite: Literal["stop", "skip"] = "stop"
    #: Also keep a checkpoint every this many steps (checkpoints/step_XXXXXXX.pt); 0 = off.
    #: latest.pt is written then too, at every evaluation, and when a run is stopped;
    #: best.pt at each new best val loss.
    checkpoint_every: int = attrs.field(default=0, validator=_non_negative)
    #: How many of those step checkpoints to keep, newest first; 0 = all of them.
    keep_last: int = attrs.field(default=0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        # Under data parallel it must divide each process's share: checked at start-up,
        # once the number of processes is known (tel_core.data.batching.plan_batches).
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size ({self.micro_batch_size}) must divide batch_size "
                f"({self.batch_size})"
            )
        if self.lr_scaling != "none" and self.reference_batch_size is None:
            raise ValueError(
                f'lr_scaling = "{self.lr_scaling}" needs reference_batch_size, the batch size '
                f"at which the optimizer's lr is right"
            )

    @property
    def lr_scale(self) -> float:
        """The factor ``lr_scaling`` applies to every learning rate."""
        if self.lr_scaling == "none" or self.reference_batch_size is None:
            return 1.0
        ratio = self.batch_size / self.reference_batch_size
        return ratio if self.lr_scaling == "linear" else ratio**0.5


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
    probes: tuple[Selection, ...] = components("probe", defaults=())


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
