"""Token-aware gradient accumulation: however a step is split, its gradient is one batch's."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tel_core.data.batching import IGNORE_INDEX, Batch
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.loop import Trainer
from tel_core.train.run import run

BLOCK = 16
#: Real targets per row: from 1 to a full block, all different lengths.
ROW_LENGTHS = [16, 3, 9, 1, 12, 5, 14, 7]


def padded_batch(vocab_size: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.zeros(len(ROW_LENGTHS), BLOCK, dtype=torch.long)
    targets = torch.full_like(inputs, IGNORE_INDEX)
    for i, n in enumerate(ROW_LENGTHS):
        row = torch.randint(vocab_size, (n + 1,), generator=generator)
        inputs[i, :n], targets[i, :n] = row[:-1], row[1:]
    return Batch(inputs, targets, sum(ROW_LENGTHS), len(ROW_LENGTHS))


def pad_experiment(tiny, paragraphs, **train):
    tiny["data"]["dataset"].update(paths=[str(paragraphs)], separator="\n\n")
    tiny["data"].update(batching="pad", block_size=BLOCK)
    tiny["train"].update(train)
    return tiny


def trainer(tmp_path, registry, config, name) -> Trainer:
    (tmp_path / name).mkdir()
    return Trainer(experiment_from_dict(config, registry), tmp_path / name, registry)


def gradients(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def full_batch_gradient(model, batch: Batch, reduction: str) -> tuple[float, torch.Tensor]:
    """One forward and backward pass over the whole batch, with torch's own reductions."""
    model.zero_grad(set_to_none=True)
    logits = model(batch.inputs)
    if reduction == "token":  # the mean over every real target token
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX
        )
    else:  # the mean over sequences of each sequence's mean
        loss = torch.stack(
            [
                F.cross_entropy(row_logits, row, ignore_index=IGNORE_INDEX)
                for row_logits, row in zip(logits, batch.targets, strict=True)
            ]
        ).mean()
    loss.backward()
    grad = gradients(model)
    model.zero_grad(set_to_none=True)
    return loss.item(), grad


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_accumulated_gradients_equal_one_full_batch(
    tmp_path, registry, tiny, paragraphs, reduction
):
    config = pad_experiment(tiny, paragraphs, batch_size=8, loss_reduction=reduction)
    reference = trainer(tmp_path, registry, config, "reference")
    batch = padded_batch(reference.tokenizer.vocab_size)
    loss, expected = full_batch_gradient(reference.model, batch, reduction)
    for micro_batches in (1, 2, 4):
        config["train"]["micro_batch_size"] = 8 // micro_batches
        t = trainer(tmp_path, registry, config, f"micro{micro_batches}")
        assert t.plan.accumulation_steps == micro_batches
        got_loss = t.accumulate(batch).item()
        difference = (gradients(t.model) - expected).abs().max().item()
        assert difference <= 1e-6, (micro_batches, difference)
        assert got_loss == pytest.approx(loss, rel=1e-6)


def test_the_reductions_differ_on_unequal_rows_and_the_test_would_see_a_mistake(
    tmp_path, registry, tiny, paragraphs
):
    config = pad_experiment(tiny, paragraphs, batch_size=8)
    model = trainer(tmp_path, registry, config, "t").model
    batch = padded_batch(model.vocab_size)
    _, token = full_batch_gradient(model, batch, "token")
    _, sequence = full_batch_gradient(model, batch, "sequence")
    assert (token - sequence).abs().max() > 1e-4
    # The common mistake: the mean within each micro-batch, averaged over micro-batches.
    for x, y in batch.micro_batches(2):
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        (loss / 4).backward()
    assert (gradients(model) - token).abs().max() > 1e-4


def metrics(run_dir, key):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if key in r]


def test_a_padded_run_counts_real_tokens_and_splits_exactly(tmp_path, registry, tiny, paragraphs):
    config = pad_experiment(tiny, paragraphs, batch_size=8)
    run(experiment_from_dict(config, registry), tmp_path / "whole", registry)
    config["train"]["micro_batch_size"] = 2
    run(experiment_from_dict(config, registry), tmp_path / "split", registry)
    whole, split = (
        metrics(tmp_path / "whole", "train/loss"),
        metrics(tmp_path / "split", "train/loss"),
    )
    assert [r["train/loss"] for r in split] == pytest.approx(
        [r["train/loss"] for r in whole], abs=1e-5
    )
    per_step = [r["train/tokens_per_step"] for r in whole]
    assert all(0 < n < 8 * BLOCK for n in per_step)  # padding is not counted
    assert len(set(per_step)) > 1
    assert [r["train/tokens"] for r in whole] == [sum(per_step[: i + 1]) for i in range(6)]
    assert per_step == [r["train/tokens_per_step"] for r in split]
