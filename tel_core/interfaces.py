"""What components receive from the core and what they hand back.

Contexts are small frozen attrs classes: adding a field later breaks no plugin. The
abstract classes spell out the contract of the components that are not torch modules.
Torch-side building blocks (``Positional``) live in ``tel_core.nn``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    import numpy as np

    from tel_core.media import Histogram

Split = Literal["train", "val"]


@attrs.frozen
class ModelContext:
    """The model's shape, handed to attention, positional and feed-forward factories, and
    to every model component's ``check``."""

    d_model: int
    n_heads: int
    n_layers: int
    block_size: int  # the longest sequence the model will see
    dropout: float
    bias: bool  # whether linear layers carry a bias
    make_norm: Callable[[int], Any]  # builds the experiment's norm for a given width

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@attrs.frozen
class DataContext:
    """What a dataset needs to know about the experiment."""

    val_fraction: float
    seed: int


@attrs.frozen
class ScheduleContext:
    base_lr: float
    max_steps: int


@attrs.frozen
class LoggerContext:
    run_dir: Path
    name: str  # the experiment's name
    max_steps: int
    start_step: int  # > 0 when a run resumes
    config: Mapping[str, Any]  # the resolved experiment, as plain data


@attrs.frozen
class ParameterGroups:
    """A model's trainable parameters, sorted so that optimizers can choose what to decay.

    Every parameter appears exactly once. The LM head counts as an embedding whether or
    not it is tied to the token embedding: ``tie_embeddings`` changes nothing about what
    is decayed.
    """

    matrices: list[Any]  # weights of linear maps and other parameters with 2+ dims
    embeddings: list[Any]  # weights of nn.Embedding tables, and the LM head's
    vectors: list[Any]  # biases, norm gains, and other parameters with < 2 dims (0-D too)

    def with_weight_decay(
        self, weight_decay: float, decay_embeddings: bool = False
    ) -> list[dict[str, Any]]:
        """Optimizer param groups: weight matrices decayed; vectors never; embeddings if asked.

        Decaying a norm's gain or a bias pulls it towards zero, which only hurts; whether to
        decay embeddings is a genuine experiment (nanoGPT does, many recipes do not).
        """
        decayed = self.matrices + (self.embeddings if decay_embeddings else [])
        kept = self.vectors + ([] if decay_embeddings else self.embeddings)
        groups = [
            {"params": decayed, "weight_decay": weight_decay},
            {"params": kept, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]


class Dataset(abc.ABC):
    """A source of text documents, split deterministically into train and val."""

    @abc.abstractmethod
    def documents(self, split: Split) -> Iterable[str]:
        """The documents of one split, in a fixed order."""

    def fingerprint(self) -> str | None:
        """A string that changes whenever the documents do, used to cache token files.

        Return None (the default) to tokenize afresh on every run.
        """
        return None


class Tokenizer(abc.ABC):
    """Text to ids and back. State beyond the options lives in ``state_dict``."""

    #: An id appended after every document when documents are concatenated, if any.
    eos_id: int | None = None

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @abc.abstractmethod
    def encode(self, text: str) -> Sequence[int]:
        """Ids for ``text``: a list of ints or a 1-D integer numpy array."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    def count_bytes(self, ids: Sequence[int]) -> int:
        """UTF-8 bytes of the text behind ``ids`` (the denominator of bits per byte)."""
        return len(self.decode(ids).encode("utf-8"))

    def fit(self, documents: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Learn a vocabulary from the training documents. Iterating is optional."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state learned by ``fit`` (saved in the run directory)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Restore what ``state_dict`` returned."""

    def to_huggingface(self) -> Any:
        """The same tokenizer as a ``tokenizers.Tokenizer`` (giving the same ids for every
        text), for ``tel export --format hf``; None (the default) if there is none."""
        return None


class Logger(abc.ABC):
    """Receives metrics and text while a run trains, and what probes hand out."""

    @abc.abstractmethod
    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def log_text(self, step: int, name: str, text: str) -> None:  # noqa: B027
        """Free text such as a generated sample or a notice. Ignored by default."""

    def log_histogram(self, step: int, name: str, histogram: Histogram) -> None:  # noqa: B027
        """A probe's histogram (``tel_core.media.Histogram``: edges and counts). Ignored by
        default."""

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:  # noqa: B027
        """A probe's image: a uint8 numpy array (height, width, 3 or 4). Ignored by default."""

    def close(self) -> None:  # noqa: B027
        """Flush and release everything. Called once, also when a run fails."""
