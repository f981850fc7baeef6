"""tel_core.train.scoring: the numbers of an evaluation, on logits whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from tel_core.data.batching import IGNORE_INDEX
from tel_core.train.scoring import metrics, score_sums


class FixedLogits(torch.nn.Module):
    """Returns the same logits whatever the input (one row, three positions)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(idx.size(0), -1, -1)


def test_accuracy_counts_real_targets_only():
    vocab = 7
    logits = torch.arange(vocab, dtype=torch.float32).repeat(1, 3, 1)  # always predicts 6, 5, ..
    targets = torch.tensor([[6, 2, IGNORE_INDEX]])  # a top-1 hit, then a top-5 hit
    model = FixedLogits(logits)
    sums = score_sums(model, [(torch.zeros(1, 3, dtype=torch.long), targets)], torch.device("cpu"))
    m = metrics(sums, n_bytes=2)
    assert m["val/accuracy"] == pytest.approx(0.5)
    # The top 5 of 0..6 are 6, 5, 4, 3, 2: target 2 is the fifth.
    assert m["val/accuracy_top5"] == pytest.approx(1.0)
    expected = -(torch.log_softmax(logits[0, 0], -1)[6] + torch.log_softmax(logits[0, 1], -1)[2])
    assert m["val/loss"] == pytest.approx(expected.item() / 2)
    assert m["val/bits_per_byte"] == pytest.approx(expected.item() / math.log(2) / 2)


def test_top5_with_a_vocabulary_smaller_than_five():
    logits = torch.tensor([[[0.0, 1.0, 2.0]]])
    targets = torch.tensor([[0]])
    sums = score_sums(
        FixedLogits(logits), [(torch.zeros(1, 1, dtype=torch.long), targets)], torch.device("cpu")
    )
    m = metrics(sums, n_bytes=1)
    assert m["val/accuracy"] == 0.0
    assert m["val/accuracy_top5"] == 1.0


def test_pieces_are_shared_out_by_rank():
    logits = torch.zeros(1, 2, 4)
    batch = (torch.zeros(1, 2, dtype=torch.long), torch.tensor([[1, 2]]))
    pieces = [batch] * 5
    counts = [
        score_sums(FixedLogits(logits), pieces, torch.device("cpu"), rank=r, world_size=2)[1]
        for r in range(2)
    ]
    assert [c.item() for c in counts] == [6.0, 4.0]
