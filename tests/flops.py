"""Training FLOPs counted by torch, independently of the model's own estimate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def counted_flops_per_token(model: torch.nn.Module, vocab_size: int, block_size: int) -> float:
    """The FLOPs torch's counter sees in one forward and backward pass over full blocks,
    per token: every matrix multiply and attention product, forward and backward."""
    batch = 2
    idx = torch.randint(vocab_size, (batch, block_size), generator=torch.Generator().manual_seed(0))
    model.train()
    # The counter does not know the fused CPU attention kernel (it counts it as 0); the
    # math kernel computes the same products as matrix multiplies, which it counts.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(idx)
        F.cross_entropy(logits.flatten(0, 1), idx.flatten()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / (batch * block_size)
