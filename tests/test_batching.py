"""Batches: windows and padded rows, shards of a global batch, and the batch plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tel_core.config.schema import TrainConfig
from tel_core.data.batching import (
    EVAL_SEED,
    IGNORE_INDEX,
    VAL_BATCH_ROWS,
    PadSampler,
    WindowSampler,
    describe_validation,
    plan_batches,
    validation_rows,
)
from tel_core.errors import ConfigError, TelError
from tel_core.train.experiment import experiment_from_dict

# Five documents of 3, 9, 1, 6 and 20 tokens (the one of 1 token has no target).
LENGTHS = [3, 9, 1, 6, 20]
OFFSETS = np.concatenate([[0], np.cumsum(LENGTHS)])
TOKENS = np.arange(OFFSETS[-1], dtype=np.uint16) % 50 + 1


def test_pad_rows_hold_one_document_each_and_ignore_the_padding():
    block = 8
    sampler = PadSampler(TOKENS, OFFSETS, block, seed=0, split="train")
    batch = sampler.sample(64)
    assert batch.inputs.shape == batch.targets.shape == (64, block)
    real = batch.targets != IGNORE_INDEX
    counts = real.sum(1)
    # Each row's targets are a prefix; a document of L tokens gives min(L, 9) - 1 targets.
    assert set(counts.tolist()) <= {2, 8, 5}
    assert len(set(counts.tolist())) > 1  # rows of unequal lengths occur
    assert torch.equal(real, torch.arange(block) < counts[:, None])
    assert batch.total_tokens == int(counts.sum()) and batch.total_rows == 64
    # Each row is n + 1 consecutive tokens of one document (every token value is unique).
    for x, y, n in zip(batch.inputs, batch.targets, counts.tolist(), strict=True):
        start = int(x[0]) - 1
        assert torch.equal(torch.cat([x[:n], y[n - 1 : n]]), torch.arange(start, start + n + 1) + 1)
        document = np.searchsorted(OFFSETS, start, side="right") - 1
        assert start + n + 1 <= OFFSETS[document + 1]
        assert (x[n:] == 0).all()


def test_pad_batching_needs_a_document_with_a_target():
    with pytest.raises(TelError, match="no document of the val split"):
        PadSampler(TOKENS[:1], np.array([0, 1]), 8, seed=0, split="val")


@pytest.mark.parametrize("sampler_class", [WindowSampler, PadSampler])
def test_the_shards_of_a_global_batch_are_its_rows(sampler_class):
    def make(seed):
        if sampler_class is WindowSampler:
            return WindowSampler(TOKENS, 8, seed)
        return PadSampler(TOKENS, OFFSETS, 8, seed, "train")

    whole = make(3).sample(8)
    shards = [make(3).sample(8, rank, 4) for rank in range(4)]
    assert torch.equal(torch.cat([s.inputs for s in shards]), whole.inputs)
    assert torch.equal(torch.cat([s.targets for s in shards]), whole.targets)
    # Every shard knows the count of the whole step, not just its own.
    assert {(s.total_tokens, s.total_rows) for s in shards} == {(whole.total_tokens, 8)}
    # ... and every generator moved alike, so the next steps match too.
    one, other = make(3), make(3)
    one.sample(8)
    other.sample(8, 1, 2)
    assert torch.equal(one.sample(8, 1, 2).inputs, other.sample(8, 1, 2).inputs)


def test_the_sampler_state_restores_the_stream():
    sampler = PadSampler(TOKENS, OFFSETS, 8, seed=1, split="train")
    sampler.sample(4)
    state = sampler.state_dict()
    expected = sampler.sample(4)
    again = PadSampler(TOKENS, OFFSETS, 8, seed=99, split="train")
    again.load_state_dict(state)
    assert torch.equal(again.sample(4).targets, expected.targets)


def _experiment(**train):
    data = {
        "name": "v",
        "data": {"dataset": {"name": "text", "paths": []}, "batching": "pad", "block_size": 8},
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 4},
        "train": {"eval_batches": 3, **train},
    }
    return experiment_from_dict(data)


def test_validation_rows_do_not_depend_on_the_batch_size_or_the_micro_batch_size():
    def rows(**train):
        pieces = validation_rows(_experiment(**train), TOKENS, OFFSETS)
        assert [len(x) for x, _ in pieces] == [VAL_BATCH_ROWS] * 3
        return torch.cat([y for _, y in pieces])

    reference = rows(batch_size=16)
    assert torch.equal(rows(batch_size=64, micro_batch_size=8), reference)
    assert torch.equal(rows(batch_size=2, micro_batch_size=1), reference)
    # ... and they are what eval_batches draws of 16 rows gave before: the baseline's
    # (batch_size 16) validation set, and so its numbers, are unchanged.
    sampler = PadSampler(TOKENS, OFFSETS, 8, seed=EVAL_SEED, split="val")
    before = torch.cat([sampler.sample(16).targets for _ in range(3)])
    assert torch.equal(reference, before)
    assert len(validation_rows(_experiment(), TOKENS, OFFSETS, batches=5)) == 5


def test_the_description_of_a_validation_set_tells_sets_apart():
    experiment = _experiment()
    rows = validation_rows(experiment, TOKENS, OFFSETS)
    described = describe_validation(experiment, rows, n_bytes=123)
    assert described["rows"] == 3 * VAL_BATCH_ROWS and described["bytes"] == 123
    assert described["targets"] == sum(int((y != IGNORE_INDEX).sum()) for _, y in rows)
    again = describe_validation(experiment, validation_rows(experiment, TOKENS, OFFSETS), 123)
    assert again == described
    other = validation_rows(experiment, TOKENS[::-1].copy(), OFFSETS)
    assert describe_validation(experiment, other, 123)["digest"] != described["digest"]


def test_the_batch_plan():
    plan = plan_batches(TrainConfig(batch_size=16, micro_batch_size=4), world_size=2)
    assert (plan.rows_per_process, plan.micro_size, plan.accumulation_steps) == (8, 4, 2)
    assert plan_batches(TrainConfig(batch_size=16), world_size=4).micro_size == 4
    with pytest.raises(ConfigError, match=r"batch_size \(16\) must be a multiple .* \(3\)"):
        plan_batches(TrainConfig(batch_size=16), world_size=3)
    with pytest.raises(ConfigError, match=r"micro_batch_size \(8\) must divide .* = 4\)"):
        plan_batches(TrainConfig(batch_size=16, micro_batch_size=8), world_size=4)
