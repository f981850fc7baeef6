"""Text from a random order-k Markov chain, whose best possible loss is known exactly.

Each context of ``order`` symbols gets a next-symbol distribution drawn from a symmetric
Dirichlet(``concentration``) (small: nearly deterministic; large: nearly uniform), seeded
by the dataset's own ``seed`` so that runs with other training seeds see the same task.
Both splits are long stretches of the chain started from its stationary distribution.

The optimum is exact: a model that has seen m previous symbols can do no better than the
conditional entropy h_m of the next one, and h_m equals the entropy rate H once m reaches
the order. A row's j-th target has j symbols before it, so the lowest validation loss is
the mean of h_min(j, k) over a row's targets, in bits per token when every symbol is one
token (the byte and char tokenizers).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from functools import cached_property

import attrs
import numpy as np

from tel_core.plugin import (
    DataContext,
    Dataset,
    Document,
    Optimum,
    OptimumContext,
    Split,
    TelError,
    hookimpl,
)

#: The symbols, in order: an alphabet of size n uses the first n.
SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#: Symbols per part of a split (a split is one document, generated part by part).
PART_SYMBOLS = 1 << 16
#: Bump when the generated text for the same options changes.
GENERATOR_VERSION = 1


@attrs.frozen
class MarkovOptions:
    #: How many symbols the chain uses (letters, then digits; at most 62).
    alphabet_size: int = attrs.field(
        default=16, validator=[attrs.validators.ge(2), attrs.validators.le(len(SYMBOLS))]
    )
    #: How many previous symbols decide the next one's distribution.
    order: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    #: The Dirichlet concentration of each context's next-symbol distribution: lower is
    #: more predictable (lower entropy rate).
    concentration: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    #: Symbols in the training split.
    train_symbols: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(2))
    #: Symbols in the validation split.
    val_symbols: int = attrs.field(default=100_000, validator=attrs.validators.ge(2))
    #: The chain's seed (the task's, not the run's).
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.alphabet_size ** (self.order + 1) > 1 << 24:
            raise ValueError(
                f"alphabet_size ** (order + 1) = {self.alphabet_size ** (self.order + 1):,} "
                "transition probabilities is too many (at most 16,777,216)"
            )


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=-1)


@attrs.frozen
class MarkovChain:
    """An order-k chain over n symbols. A state is the last k symbols as a base-n number,
    the most recent symbol its lowest digit: the next state is ``(state * n + x) % n**k``."""

    n: int
    order: int
    transitions: np.ndarray  # (n**k, n): P(next symbol | state)

    @classmethod
    def random(cls, n: int, order: int, concentration: float, seed: int) -> MarkovChain:
        rng = np.random.default_rng(seed)
        transitions = rng.dirichlet(np.full(n, concentration), size=n**order)
        if not (transitions > 0).all():
            raise TelError(
                f"markov dataset: concentration {concentration} drew a transition of "
                "probability 0 (the chain may not mix); use a larger concentration"
            )
        return cls(n, order, transitions)

    @property
    def n_states(self) -> int:
        return self.n**self.order

    def next_states(self) -> np.ndarray:
        """(n_states, n): the state after each state and symbol."""
        states = np.arange(self.n_states)[:, None] * self.n + np.arange(self.n)[None, :]
        return states % self.n_states

    @cached_property
    def stationary(self) -> np.ndarray:
        """The stationary distribution over states (power iteration; every transition is
        positive, so the chain is irreducible and aperiodic and it is unique)."""
        pi = np.full(self.n_states, 1.0 / self.n_states)
        nxt = self.next_states().ravel()
        for _ in range(100_000):
            new = np.bincount(
                nxt, weights=(pi[:, None] * self.transitions).ravel(), minlength=len(pi)
            )
            new /= new.sum()
            if np.abs(new - pi).sum() < 1e-15:
                return new
            pi = new
        return pi

    def conditional_entropy(self, m: int) -> float:
        """h_m: bits of the next symbol given the m before it, in the stationary chain."""
        m = min(m, self.order)
        # Group states by their last m symbols (the state's low m digits).
        joint = self.stationary[:, None] * self.transitions  # (states, n)
        context = joint.reshape(-1, self.n**m, self.n).sum(axis=0)  # (n**m, n)
        weight = context.sum(axis=1)
        return float((weight * entropy_bits(context / weight[:, None])).sum())

    @property
    def entropy_rate(self) -> float:
        """H, bits per symbol: the conditional entropy given the whole context."""
        return self.conditional_entropy(self.order)

    def sample(self, length: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """``length`` symbols of the chain from its stationary distribution, in parts."""
        cumulative = np.cumsum(self.transitions, axis=1).tolist()
        state = int(rng.choice(self.n_states, p=self.stationary))
        # The first k symbols are the start state's digits, oldest first.
        first = [(state // self.n**i) % self.n for i in reversed(range(self.order))]
        part = first[:length]
        remaining = length - len(part)
        n, n_states = self.n, self.n_states
        while remaining > 0:
            todo = min(PART_SYMBOLS, remaining)
            for u in rng.random(todo).tolist():
                x = min(bisect.bisect_right(cumulative[state], u), n - 1)
                part.append(x)
                state = (state * n + x) % n_states
            remaining -= todo
            yield np.asarray(part, dtype=np.uint8)
            part = []
        if part:
            yield np.asarray(part, dtype=np.uint8)


class MarkovDataset(Dataset):
    """Text from a seeded random order-k Markov chain; declares its exact optimum."""

    def __init__(self, options: MarkovOptions, ctx: DataContext) -> None:
        self.options = options

    @cached_property
    def chain(self) -> MarkovChain:
        o = self.options
        return MarkovChain.random(o.alphabet_size, o.order, o.concentration, o.seed)

    def documents(self, split: Split) -> Iterator[Document]:
        yield self._text(split)

    def _text(self, split: Split) -> Iterator[str]:
        o = self.options
        length = o.train_symbols if split == "train" else o.val_symbols
        # Each split from its own stream: the validation text is never in the training text.
        rng = np.random.default_rng([o.seed, 1 if split == "train" else 2])
        table = np.frombuffer(SYMBOLS.encode("ascii"), dtype=np.uint8)
        for symbols in self.chain.sample(length, rng):
            yield table[symbols].tobytes().decode("ascii")

    def fingerprint(self) -> str:
        # The text is a function of the options, the generator and numpy's random streams.
        key = f"{attrs.asdict(self.options)}|{GENERATOR_VERSION}|numpy {np.__version__}"
        return hashlib.sha256(key.encode()).hexdigest()

    def optimum(self, ctx: OptimumContext) -> Optimum | None:
        alphabet = SYMBOLS[: self.options.alphabet_size]
        sample = alphabet + next(self._text("val"))[:4096]
        ids = list(ctx.tokenizer.encode(sample))
        distinct = {int(i) for i in ctx.tokenizer.encode(alphabet)}
        if len(ids) != len(sample) or len(distinct) != len(alphabet):
            return None  # not one token per symbol: the optimum per token is not known
        h = [self.chain.conditional_entropy(j) for j in range(1, ctx.block_size + 1)]
        return Optimum(bits_per_token=float(np.mean(h)))


@hookimpl
def register_datasets(register):
    register("markov", MarkovDataset, options=MarkovOptions)
