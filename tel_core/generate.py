"""Sampling text from a trained model."""

from __future__ import annotations

import torch

from tel_core.model import LanguageModel


@torch.no_grad()
def generate(
    model: LanguageModel,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``prompt`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + new).

    The context is cropped to the model's block size; top_k = 0 samples from the whole
    vocabulary.
    """
    was_training = model.training
    model.eval()
    ids = prompt
    for _ in range(max_new_tokens):
        context = ids[:, -model.block_size :]
        logits = model(context)[:, -1, :] / temperature  # (B, vocab)
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits.float(), dim=-1)
        next_id = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat((ids, next_id), dim=1)
    model.train(was_training)
    return ids
