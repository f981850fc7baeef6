"""Scoring a model on fixed rows: the loop's evaluation, and `tel eval`'s.

One function, so that a checkpoint evaluated after training on the run's validation rows
gives exactly the ``val/*`` numbers the run logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from tel_core.batching import IGNORE_INDEX
from tel_core.loss import token_losses

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
) -> torch.Tensor:
    """Sums over this process's share of ``batches`` (every ``world_size``-th piece):
    float64 (loss in nats, real targets, top-1 hits, top-5 hits). Sum them over the
    processes, then hand them to ``metrics``."""
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for i, (x, y) in enumerate(batches):
        if i % world_size != rank:
            continue
        x, y = x.to(device), y.to(device)
        with autocast():
            logits = model(x)
        real = y != IGNORE_INDEX
        sums[0] += token_losses(logits, y).sum()
        sums[1] += real.sum()
        top = logits.topk(min(TOP_K, logits.size(-1)), dim=-1).indices  # (B, T, k)
        hits = (top == y.unsqueeze(-1)) & real.unsqueeze(-1)
        sums[2] += hits[..., 0].sum()
        sums[3] += hits.any(dim=-1).sum()
    return sums


def metrics(sums: torch.Tensor | Sequence[float], n_bytes: int) -> dict[str, float]:
    """The ``val/*`` metrics from ``score_sums`` (summed over processes) and the bytes
    of text behind the real targets."""
    total, count, top1, top5 = (float(v) for v in sums)
    count = max(count, 1.0)
    loss = total / count
    return {
        "val/loss": loss,
        "val/ppl": math.exp(min(loss, 50.0)),
        "val/bits_per_token": loss / math.log(2),
        "val/bits_per_byte": total / math.log(2) / max(1, n_bytes),
        "val/accuracy": top1 / count,
        "val/accuracy_top5": top5 / count,
    }
