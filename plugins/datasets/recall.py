"""Associative recall: key-value pairs, then queries whose answers are in the context.

An episode (one document, one line) lists ``n_pairs`` pairs of a distinct key (a letter)
and a value (a digit), then ``|``, then ``n_queries`` distinct keys each followed by ``=``
and the value it was paired with::

    a3k7c1f9q0m2|c=1q=0a=3

A model that can look back and copy scores every answer perfectly: the answers' optimum
is zero loss, and their accuracy is the probe of what an attention variant can do
(Arora et al., 2023, "Zoology"). The rest of the episode is random, with an entropy that
is known exactly, so the whole row's optimum is declared too. Each row must hold one
whole episode: ``batching = "pad"`` and a ``block_size`` of at least the episode's length.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import attrs
import numpy as np

from tel_core.plugin import DataContext, Dataset, Optimum, OptimumContext, Split, TelError, hookimpl

KEYS = "abcdefghijklmnopqrstuvwxyz"
VALUES = "0123456789"
#: Bump when the generated text for the same options changes.
GENERATOR_VERSION = 1


@attrs.frozen
class RecallOptions:
    #: Key-value pairs an episode lists before its queries.
    n_pairs: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    #: Queries per episode (distinct keys among the pairs').
    n_queries: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Keys are drawn from the first n_keys letters.
    n_keys: int = attrs.field(
        default=26, validator=[attrs.validators.ge(1), attrs.validators.le(len(KEYS))]
    )
    #: Values are drawn from the first n_values digits.
    n_values: int = attrs.field(
        default=10, validator=[attrs.validators.ge(2), attrs.validators.le(len(VALUES))]
    )
    #: Episodes in the training split.
    train_episodes: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))
    #: Episodes in the validation split.
    val_episodes: int = attrs.field(default=1_000, validator=attrs.validators.ge(1))
    #: The task's seed (not the run's): the same episodes whatever the training seed.
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.n_pairs > self.n_keys:
            raise ValueError(f"n_pairs ({self.n_pairs}) must not exceed n_keys ({self.n_keys})")
        if self.n_queries > self.n_pairs:
            raise ValueError(
                f"n_queries ({self.n_queries}) must not exceed n_pairs ({self.n_pairs})"
            )

    @property
    def episode_length(self) -> int:
        """Characters of an episode, its newline included."""
        return 2 * self.n_pairs + 1 + 3 * self.n_queries + 1


def episodes(options: RecallOptions, count: int, rng: np.random.Generator) -> Iterator[str]:
    for _ in range(count):
        keys = rng.choice(options.n_keys, size=options.n_pairs, replace=False)
        values = rng.integers(options.n_values, size=options.n_pairs)
        asked = rng.choice(options.n_pairs, size=options.n_queries, replace=False)
        pairs = "".join(KEYS[k] + VALUES[v] for k, v in zip(keys, values, strict=True))
        queries = "".join(f"{KEYS[keys[i]]}={VALUES[values[i]]}" for i in asked)
        yield f"{pairs}|{queries}\n"


def episode_bits(options: RecallOptions) -> float:
    """Bits of an episode's targets (every token but the first) for a perfect model.

    The first key is the row's first input, never a target; each further key is one of
    the keys not used yet; each value one of n_values; the queries an ordered choice of
    distinct pairs; "|", "=", the answers and the newline are determined.
    """
    keys = sum(math.log2(options.n_keys - i) for i in range(1, options.n_pairs))
    values = options.n_pairs * math.log2(options.n_values)
    queries = sum(math.log2(options.n_pairs - i) for i in range(options.n_queries))
    return keys + values + queries


class RecallDataset(Dataset):
    """Associative recall episodes (pairs, then queries); declares its answers and optimum."""

    def __init__(self, options: RecallOptions, ctx: DataContext) -> None:
        self.options = options

    def documents(self, split: Split) -> Iterator[str]:
        o = self.options
        count = o.train_episodes if split == "train" else o.val_episodes
        rng = np.random.default_rng([o.seed, 1 if split == "train" else 2])
        yield from episodes(o, count, rng)

    def fingerprint(self) -> str:
        key = f"{attrs.asdict(self.options)}|{GENERATOR_VERSION}|numpy {np.__version__}"
        return hashlib.sha256(key.encode()).hexdigest()

    def optimum(self, ctx: OptimumContext) -> Optimum:
        o = self.options
        sample = "".join(episodes(o, 50, np.random.default_rng(0)))
        ids = list(ctx.tokenizer.encode(sample))
        if len(ids) != len(sample):
            raise TelError(
                "recall dataset: the answers are scored token by token, so it needs a "
                'tokenizer with one token per character: tokenizer = "byte" or "char"'
            )
        tokens = o.episode_length + (ctx.tokenizer.eos_id is not None)
        if ctx.batching != "pad" or ctx.block_size + 1 < tokens:
            raise TelError(
                f"recall dataset: each row must hold one whole episode ({tokens} tokens): set "
                f'[data] batching = "pad" and block_size >= {tokens - 1}'
            )
        equals = int(ctx.tokenizer.encode("=")[0])

        def answers(inputs, targets):
            return inputs == equals  # the answer is the token after "="

        return Optimum(bits_per_token=episode_bits(o) / (tokens - 1), answers=answers)


@hookimpl
def register_datasets(register):
    register("recall", RecallDataset, options=RecallOptions)
