"""Scoring a model on fixed rows: the loop's evaluation, and `tel eval`'s.

One function, so that a checkpoint evaluated after training on the run's validation rows
gives exactly the ``val/*`` numbers the run logged. A dataset that declares its optimum
(``tel_core.registry.interfaces.Optimum``) adds the excess over it and, for a task with answers,
the loss and accuracy on the answer targets alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from tel_core.data.batching import IGNORE_INDEX
from tel_core.registry.interfaces import Tokenizer
from tel_core.train.loss import token_losses

#: The k of ``val/accuracy_top5``.
TOP_K = 5


@torch.no_grad()
def score_sums(
    model: torch.nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    rank: int = 0,
    world_size: int = 1,
    answers: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    by_position: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sums over this process's share of ``batches`` (every ``world_size``-th piece):
    float64 (loss in nats, real targets, top-1 hits, top-5 hits, then the same three
    for the answer targets that ``answers(inputs, targets)`` marks, if given). Sum them
    over the processes, then hand them to ``metrics``.

    ``by_position``, a float64 (2, T) tensor, if given, gathers the loss and the number of
    real targets at each position of the rows: the loss by position in the context.
    """
    sums = torch.zeros(7, dtype=torch.float64, device=device)
    for i, (x, y) in enumerate(batches):
        if i % world_size != rank:
            continue
        x, y = x.to(device), y.to(device)
        with autocast():
            logits = model(x)
        real = y != IGNORE_INDEX
        losses = token_losses(logits, y)  # (B, T), 0 where padded
        sums[0] += losses.sum()
        sums[1] += real.sum()
        if by_position is not None:
            by_position[0, : y.size(1)] += losses.sum(dim=0).to(by_position)
            by_position[1, : y.size(1)] += real.sum(dim=0).to(by_position)
        top = logits.topk(min(TOP_K, logits.size(-1)), dim=-1).indices  # (B, T, k)
        hits = (top == y.unsqueeze(-1)) & real.unsqueeze(-1)
        sums[2] += hits[..., 0].sum()
        sums[3] += hits.any(dim=-1).sum()
        if answers is not None:
            marked = answers(x, y).to(device) & real
            sums[4] += losses[marked].sum()
            sums[5] += marked.sum()
            sums[6] += hits[..., 0][marked].sum()
    return sums


def target_bytes(tokenizer: Tokenizer, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """UTF-8 bytes of the text behind the real targets of ``batches`` (for bits per byte)."""
    return sum(
        tokenizer.count_bytes(row[row != IGNORE_INDEX].tolist())
        for _, targets in batches
        for row in targets
    )


def metrics(
    sums: torch.Tensor | Sequence[float], n_bytes: int, optimum_bits: float | None = None
) -> dict[str, float]:
    """The ``val/*`` metrics from ``score_sums`` (summed over processes), the bytes of
    text behind the real targets, and the dataset's optimum in bits per token, if known."""
    values = [float(v) for v in sums]
    total, count, top1, top5 = values[:4]
    count = max(count, 1.0)
    loss = total / count
    out = {
        "val/loss": loss,
        "val/ppl": math.exp(min(loss, 50.0)),
        "val/bits_per_token": loss / math.log(2),
        "val/bits_per_byte": total / math.log(2) / max(1, n_bytes),
        "val/accuracy": top1 / count,
        "val/accuracy_top5": top5 / count,
    }
    if optimum_bits is not None:
        out["val/excess_bits_per_token"] = out["val/bits_per_token"] - optimum_bits
    if len(values) > 4 and values[5] > 0:
        answer_loss, answer_count, answer_hits = values[4:7]
        out["val/answer_loss"] = answer_loss / answer_count
        out["val/answer_accuracy"] = answer_hits / answer_count
    return out
