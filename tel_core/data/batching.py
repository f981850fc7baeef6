"""From tokens to batches: the rows an optimizer step trains on.

Two modes, chosen by ``[data] batching``:

- ``windows``: random contiguous windows of ``block_size + 1`` tokens from the
  concatenated token stream, crossing document boundaries. Every target is real.
- ``pad``: one document a row (a random ``block_size + 1`` window of a longer one),
  padded at the end. Padded targets are ``IGNORE_INDEX``: the loss skips them and no
  token count includes them. Rows are always padded to ``block_size`` so that every
  batch has one shape (``torch.compile`` then compiles once).

The data of a step is one *global* batch drawn from one seeded generator, identical in
every process; process r of N takes its own contiguous share of the rows. A single
process sees exactly the union, so N processes train on the same data as one, and the
generator state alone is the position in the data (saved in checkpoints).

Validation rows are a fixed set (``validation_rows``): ``eval_batches`` draws of 16 rows
with a fixed seed, the same for every run of a config whatever its seed, batch size or
number of processes.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import attrs
import numpy as np
import torch

from tel_core.config.schema import Experiment, TrainConfig
from tel_core.errors import ConfigError, TelError

#: The target of a padded position: ``F.cross_entropy(..., ignore_index=IGNORE_INDEX)``.
IGNORE_INDEX = -100
#: The input id at a padded position. Any valid id would do: the model is causal and
#: padding comes after the real tokens, so it never changes a real position's output.
PAD_INPUT = 0


@attrs.frozen
class BatchPlan:
    """How one optimizer step is split over processes and micro-batches."""

    batch_size: int  # sequences per optimizer step, every process together
    world_size: int  # processes
    micro_size: int  # sequences per forward pass in one process

    @property
    def rows_per_process(self) -> int:
        return self.batch_size // self.world_size

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step in each process."""
        return self.rows_per_process // self.micro_size


def plan_batches(train: TrainConfig, world_size: int) -> BatchPlan:
    """Split ``train.batch_size`` over ``world_size`` processes and micro-batches."""
    if train.batch_size % world_size:
        raise ConfigError(
            f"[train] batch_size ({train.batch_size}) must be a multiple of the number of "
            f"processes ({world_size})"
        )
    rows = train.batch_size // world_size
    micro = train.micro_batch_size or rows
    if rows % micro:
        raise ConfigError(
            f"[train] micro_batch_size ({micro}) must divide each process's share of "
            f"batch_size ({train.batch_size} / {world_size} processes = {rows})"
        )
    return BatchPlan(train.batch_size, world_size, micro)


@attrs.frozen
class Batch:
    """One process's rows of a step, and the counts of the whole step."""

    inputs: torch.Tensor  # (rows, block_size) token ids
    targets: torch.Tensor  # (rows, block_size) next-token ids, IGNORE_INDEX where padded
    total_tokens: int  # real target tokens in the whole step, every process together
    total_rows: int  # sequences in the whole step, every process together

    def micro_batches(self, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.inputs.split(size), self.targets.split(size), strict=True))

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory, from which copies to a GPU can overlap
        with computation (``.to(device, non_blocking=True)``)."""
        inputs, targets = self.inputs.pin_memory(), self.targets.pin_memory()
        return attrs.evolve(self, inputs=inputs, targets=targets)


def shard(n_rows: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that process ``rank`` takes: a contiguous share."""
    per = n_rows // world_size
    return slice(rank * per, (rank + 1) * per)


class SeededSampler:
    """Draws from a generator of its own, so the data stream is a function of the seed
    alone, and the generator's state is the position in it (saved in checkpoints)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class WindowSampler(SeededSampler):
    """Random contiguous windows of ``block_size + 1`` tokens: inputs and shifted targets."""

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int) -> None:
        super().__init__(seed)
        self.tokens = tokens
        self.block_size = block_size

    def sample(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        high = len(self.tokens) - self.block_size  # last start that leaves room for a target
        starts = torch.randint(high, (batch_size,), generator=self.generator)
        mine = starts[shard(batch_size, rank, world_size)].tolist()
        rows = np.stack([self.tokens[s : s + self.block_size + 1] for s in mine]).astype(np.int64)
        batch = torch.from_numpy(rows)
        return Batch(batch[:, :-1], batch[:, 1:], batch_size * self.block_size, batch_size)


class PadSampler(SeededSampler):
    """One document a row, padded to ``block_size``; documents drawn uniformly at random.

    A document longer than ``block_size + 1`` tokens contributes a random window of that
    length; documents of fewer than 2 tokens (no target) are never drawn.
    """

    def __init__(
        self, tokens: np.ndarray, offsets: np.ndarray, block_size: int, seed: int, split: str
    ) -> None:
        self.tokens = tokens
        self.block_size = block_size
        lengths = np.diff(offsets)
        usable = lengths >= 2
        if not usable.any():
            raise TelError(
                f"pad batching: no document of the {split} split has 2 tokens or more; "
                f'set a separator on the dataset or use batching = "windows"'
            )
        super().__init__(seed)
        self.starts = np.asarray(offsets[:-1])[usable].astype(np.int64)
        self.lengths = lengths[usable].astype(np.int64)

    @property
    def n_documents(self) -> int:
        return len(self.starts)

    def sample(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        # Draw for the whole global batch (every process consumes the generator alike).
        docs = torch.randint(self.n_documents, (batch_size,), generator=self.generator).numpy()
        where = torch.rand(batch_size, generator=self.generator, dtype=torch.float64).numpy()
        lengths = self.lengths[docs]
        spans = np.minimum(lengths, self.block_size + 1)  # tokens of each row, with its target
        starts = self.starts[docs] + np.floor(where * (lengths - spans + 1)).astype(np.int64)
        mine = shard(batch_size, rank, world_size)
        inputs = np.full((len(starts[mine]), self.block_size), PAD_INPUT, dtype=np.int64)
        targets = np.full_like(inputs, IGNORE_INDEX)
        for i, (start, span) in enumerate(zip(starts[mine], spans[mine], strict=True)):
            row = self.tokens[start : start + span].astype(np.int64)
            inputs[i, : span - 1] = row[:-1]
            targets[i, : span - 1] = row[1:]
        total_tokens = int((spans - 1).sum())
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), total_tokens, batch_size)


Sampler = WindowSampler | PadSampler


def make_sampler(
    mode: str, tokens: np.ndarray, offsets: np.ndarray, block_size: int, seed: int, split: str
) -> Sampler:
    if mode == "pad":
        return PadSampler(tokens, offsets, block_size, seed, split)
    return WindowSampler(tokens, block_size, seed)


#: Validation rows are drawn with this seed, not the run's, so that runs with different
#: seeds are scored on the same text.
EVAL_SEED = 0
#: ... and in batches of this many rows, whatever the training batch size and the number
#: of processes, so that runs with different batch sizes are scored on the same text too.
#: (16 is the baseline's batch size: its validation set is the one it had when a
#: validation batch was a training batch.)
VAL_BATCH_ROWS = 16


def validation_rows(
    experiment: Experiment,
    tokens: np.ndarray,
    offsets: np.ndarray,
    batches: int | None = None,
    block_size: int | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The run's validation rows from its config: the fixed set every evaluation scores.

    ``batches`` (default ``[train] eval_batches``) draws of ``VAL_BATCH_ROWS`` rows from
    ``tokens`` (the validation split, with its document ``offsets``), cut as ``[data]
    batching`` and ``block_size`` say, with the generator seeded by ``EVAL_SEED``. The
    same config gives the same rows on any machine, for any batch size or number of
    processes; each (inputs, targets) piece is one forward pass. ``tel eval`` may ask for
    longer rows (``block_size``), to measure length extrapolation.
    """
    data = experiment.data
    n = experiment.train.eval_batches if batches is None else batches
    block = block_size or data.block_size
    sampler = make_sampler(data.batching, tokens, offsets, block, EVAL_SEED, "val")
    return [(b.inputs, b.targets) for b in (sampler.sample(VAL_BATCH_ROWS) for _ in range(n))]


def describe_validation(
    experiment: Experiment, rows: list[tuple[torch.Tensor, torch.Tensor]], n_bytes: int
) -> dict[str, Any]:
    """What a validation set was, for the manifest: runs whose ``digest`` differs were
    scored on different text, and their ``val/*`` numbers do not compare."""
    digest = hashlib.sha256()
    for inputs, targets in rows:
        digest.update(inputs.numpy().tobytes())
        digest.update(targets.numpy().tobytes())
    return {
        "rows": sum(len(x) for x, _ in rows),
        "batches": len(rows),
        "seed": EVAL_SEED,
        "batching": experiment.data.batching,
        "block_size": experiment.data.block_size,
        "targets": int(sum(int((y != IGNORE_INDEX).sum()) for _, y in rows)),
        "bytes": n_bytes,
        "digest": digest.hexdigest()[:16],
    }


def split_rows(
    mode: str, tokens: np.ndarray, offsets: np.ndarray, block_size: int, micro_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A whole split cut into consecutive windows, so that every target is scored once.

    ``windows``: the token stream in windows of ``block_size`` targets, one after the
    other; ``pad``: each document on its own, in as many windows as it needs. A last,
    shorter window is padded (its padded targets are ``IGNORE_INDEX``). In pieces of
    ``micro_size`` rows, in order: the same rows on every call.
    """
    bounds = [(0, len(tokens))] if mode == "windows" else list(itertools.pairwise(offsets))
    starts = [
        (s, min(s + block_size + 1, end))
        for begin, end in bounds
        for s in range(int(begin), int(end) - 1, block_size)
    ]
    pieces = []
    for first in range(0, len(starts), micro_size):
        chunk = starts[first : first + micro_size]
        inputs = np.full((len(chunk), block_size), PAD_INPUT, dtype=np.int64)
        targets = np.full_like(inputs, IGNORE_INDEX)
        for i, (s, e) in enumerate(chunk):
            row = np.asarray(tokens[s:e], dtype=np.int64)
            inputs[i, : len(row) - 1] = row[:-1]
            targets[i, : len(row) - 1] = row[1:]
        pieces.append((torch.from_numpy(inputs), torch.from_numpy(targets)))
    return pieces
