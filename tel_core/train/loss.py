"""The loss of an optimizer step, and each micro-batch's share of it.

With ``loss_reduction = "token"`` the loss of a step is the sum of the per-token losses
over the real (non-padding) target tokens of the *whole step* (every micro-batch, every
process) divided by their number. Each micro-batch contributes its sum divided by that
same total, so the gradients accumulated over micro-batches add up to exactly the
gradient of the step taken as one batch, however it is split and however unequal the
rows are.

The common mistake is to average within each micro-batch (or each sequence) first:
tokens of short sequences then weigh more than tokens of long ones, and the result
depends on how the step is split. ``"sequence"`` (the mean of per-sequence means) is that
mistake made deliberately, so that its effect can be measured. It is still divided by the
number of sequences in the whole step, so it too is independent of the split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tel_core.data.batching import IGNORE_INDEX


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropies (nats) in float32, (B, T); 0 at padded targets."""
    losses = F.cross_entropy(
        logits.flatten(0, 1).float(),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return losses.view_as(targets)


def real_tokens(targets: torch.Tensor) -> torch.Tensor:
    """How many targets are real (not padding), per row: (B,)."""
    return (targets != IGNORE_INDEX).sum(dim=1)


def step_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    reduction: str,
    total_tokens: int,
    total_rows: int,
) -> torch.Tensor:
    """This micro-batch's share of the step's loss.

    Summed over the step's micro-batches (and processes) it gives the step's loss;
    ``total_tokens`` and ``total_rows`` count the whole step.
    """
    losses = token_losses(logits, targets)
    if reduction == "token":
        return losses.sum() / total_tokens
    per_sequence = losses.sum(dim=1) / real_tokens(targets).clamp_min(1)
    return per_sequence.sum() / total_rows


class ModelLoss(nn.Module):
    """The model's forward pass (under autocast) and the micro-batch's share of the step's
    loss, as one module: what the training step calls, and what ``compile = true``
    compiles. Compiled together, the logits' float32 copy and the cross-entropy fuse into
    the kernels around them instead of writing (B, T, vocab) float32 logits to memory and
    reading them back (on GPT-2 small's shape, 10 of 47 ms a step on an H200 before).
    Uncompiled it computes exactly what the two calls did one after the other.
    """

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.dtype = dtype  # the autocast dtype; None: no autocast (fp32)

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        reduction: str,
        total_tokens: int,
        total_rows: int,
    ) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.model(inputs)
        return step_loss(logits, targets, reduction, total_tokens, total_rows)
