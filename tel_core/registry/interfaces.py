"""What components receive from the core and what they hand back.

Contexts are small frozen attrs classes: adding a field later breaks no plugin. The
abstract classes spell out the contract of the components that are not torch modules.
Torch-side building blocks (``Positional``) live in ``tel_core.model.nn``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    import numpy as np

    from tel_core.registry.media import Histogram

Split = Literal["train", "val"]

#: A document: its text, or its text in parts (a document too long to hold at once,
#: such as a whole file read in pieces). The parts are tokenized one by one and their ids
#: joined, so a dataset cuts them where the tokenizer would cut anyway (before a
#: whitespace that follows a non-space character, for byte-level BPE, byte and char).
Document = str | Iterable[str]


def parts(document: Document) -> Iterator[str]:
    """The parts of a document (a str is one part)."""
    return iter((document,)) if isinstance(document, str) else iter(document)


def document_text(document: Document) -> str:
    """A document's whole text (its parts joined): for tests and small documents."""
    return document if isinstance(document, str) else "".join(document)


@attrs.frozen
class ModelContext:
    """The model's shape, handed to attention, positional and feed-forward factories, and
    to every model component's ``check``."""

    d_model: int
    n_heads: int
    n_layers: int  # the number of blocks
    block_size: int  # the longest sequence the model will see
    dropout: float
    bias: bool  # whether linear layers carry a bias
    make_norm: Callable[[int], Any]  # builds the experiment's norm for a given width
    #: The block an attention or feed-forward module is built for, 0 .. n_layers - 1 (a
    #: depth-dependent component reads it: a per-layer scale, depth-muP); None where the
    #: model builds one component for all blocks (the positional encoding) and in checks.
    layer: int | None = None

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


@attrs.frozen
class OptimumContext:
    """What a dataset needs to know to state its optimum: how its text is scored."""

    tokenizer: Tokenizer  # fitted: the ids the model sees
    block_size: int  # targets per validation row
    batching: Literal["windows", "pad"]


@attrs.frozen
class Optimum:
    """What a dataset knows about the best any model can do on it (synthetic tasks).

    The loop reports ``val/excess_bits_per_token`` (val bits per token minus
    ``bits_per_token``) and, with ``answers``, ``val/answer_loss`` and
    ``val/answer_accuracy`` over the answer targets alone.
    """

    #: The lowest validation loss any model can reach, in bits per token, as the loop
    #: computes val loss: the sum over every real target of the validation rows divided
    #: by their number (a ratio of sums, not a mean of per-row means; with full windows
    #: every row has the same positions, so it is also the mean over a row's positions,
    #: whose early targets see less context). None: not known (then no
    #: ``val/excess_bits_per_token``).
    bits_per_token: float | None = None
    #: ``answers(inputs, targets) -> bool tensor``: which targets of a (B, T) batch are
    #: answers, scored on their own (padding is left out by the loop). None: the task has
    #: no answer targets (then no ``val/answer_*``).
    answers: Callable[[Any, Any], Any] | None = None


class Dataset(abc.ABC):
    """A source of text documents, split deterministically into train and val."""

    @abc.abstractmethod
    def documents(self, split: Split) -> Iterable[Document]:
        """The documents of one split, in a fixed order: each a str or an iterable of
        str parts (see ``Document``)."""

    def fingerprint(self) -> str | None:
        """A string that changes whenever the documents do, used to cache token files.

        Fingerprint the content (of files, say), not sizes or times: a file edited to the
        same size must give another fingerprint (``tel_core.plugin.files_digest``
        does this cheaply). Return None (the default) to tokenize afresh on every run.
        """
        return None

    def token_budget(self, split: Split) -> int | None:
        """Stop tokenizing ``split`` once it holds this many tokens (None: all of it).

        The core stops at the first document (or part) boundary at or past the budget and
        reads no further document.
        """
        return None

    def optimum(self, ctx: OptimumContext) -> Optimum | None:
        """What is known about the best reachable validation loss (None: nothing)."""
        return None


class Tokenizer(abc.ABC):
    """Text to ids and back. State beyond the options lives in ``state_dict``.

    The core builds a tokenizer from its options, then either ``fit``s it on the training
    split or, when the token cache already holds the ids (and when ``load_run`` rebuilds
    a trained model), restores it with ``load_state_dict`` from what ``state_dict``
    returned; ``vocab_size`` and ``eos_id`` are read after that.
    """

    #: The end-of-document id, or None for none. Declare it as a class attribute, or set
    #: it on the instance in ``__init__``, ``fit`` or ``load_state_dict`` (whichever
    #: decides it). The core appends it after every document's ids, for every tokenizer
    #: and in every batching mode (a padded row holds its document, ``eos_id``, then
    #: padding); ``encode`` never adds it.
    eos_id: int | None = None

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """A property (``@property def vocab_size(self) -> int``): every id, ``eos_id``
        included, is below it. Read after ``fit`` or ``load_state_dict``."""

    @abc.abstractmethod
    def encode(self, text: str) -> Sequence[int]:
        """Ids for ``text``: a list of ints or a 1-D integer numpy array."""

    def encode_batch(self, texts: Sequence[str]) -> list[Sequence[int]]:
        """``encode`` of each text; override to encode many texts at once (in parallel)."""
        return [self.encode(text) for text in texts]

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
        """Restore what ``state_dict`` returned, on a fresh instance built from the same
        options, instead of ``fit`` (a token cache hit, ``load_run``)."""

    def fingerprint(self) -> str | None:
        """What decides the ids beyond the options and the training split, for the token
        cache's key: e.g. the content of a tokenizer file it loads. None: nothing."""
        return None

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
        """A probe's histogram (``tel_core.plugin.Histogram``: edges and counts). Ignored by
        default."""

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:  # noqa: B027
        """A probe's image: a uint8 numpy array (height, width, 3 or 4). Ignored by default."""

    def close(self) -> None:  # noqa: B027
        """Flush and release everything. Called once, also when a run fails."""
