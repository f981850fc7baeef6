"""Drawing tokens from a trained model: sampling, the sliding context, the KV cache.

Each new token is drawn from the model's distribution at the last position of the
context: greedily (temperature 0) or sampled at a temperature, optionally restricted to
the ``top_k`` most likely tokens and to the smallest set whose probability reaches
``top_p`` (nucleus sampling).

The context holds at most ``block_size`` tokens. When the next token would not fit, the
context slides: it drops its oldest tokens and keeps the last ``kept_context(block_size)``
(three quarters of the block), and generation goes on from those. With the KV cache
(``tel_core.model.kv_cache``, the default) the model then refills its cache from the kept
tokens and afterwards feeds one token a step; without it (``cache=False``) every step
runs the whole context again. Both follow the same contexts, so they compute the same
distributions, to rounding: greedy decoding gives the same tokens either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import torch

from tel_core.model.decoder import LanguageModel


@attrs.frozen
class Sampling:
    """How the next token is chosen from the model's logits."""

    #: 0: always the most likely token (greedy); otherwise logits are divided by it.
    temperature: float = 1.0
    #: Sample among the k most likely tokens only; 0: no cut-off.
    top_k: int = 0
    #: Sample among the most likely tokens whose probabilities add up to top_p; 1: all.
    top_p: float = 1.0


def kept_context(block_size: int) -> int:
    """Tokens a full context keeps when it slides: three quarters of the block."""
    return max(1, block_size - block_size // 4)


def next_token(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None
) -> torch.Tensor:
    """logits (B, vocab) -> the chosen ids (B, 1)."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token once the more likely ones already reach top_p (the first stays).
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= sampling.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def stream(
    model: LanguageModel,
    prompt: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    generator: torch.Generator | None = None,
    cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield each new token (B,) of the continuations of ``prompt`` (B, T) as it is drawn.

    A prompt longer than the block is cut to its last ``block_size`` tokens.
    """
    was_training = model.training
    model.eval()
    try:
        ids = prompt
        block = model.block_size
        start = max(0, ids.size(1) - block)  # the context is ids[:, start:]
        kv = model.new_cache() if cache else None
        fed = start  # ids[:, start:fed] are in the cache
        for _ in range(max_new_tokens):
            if ids.size(1) - start > block:  # slide
                start = ids.size(1) - kept_context(block)
                if kv is not None:
                    kv.reset()
                    fed = start
            if kv is not None:
                logits = model.forward_cached(ids[:, fed:], kv)[:, -1]
                fed = ids.size(1)
            else:
                logits = model(ids[:, start:])[:, -1]
            token = next_token(logits, sampling, generator)
            ids = torch.cat((ids, token), dim=1)
            yield token[:, 0]
    finally:
        model.train(was_training)


def generate(
    model: LanguageModel,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    *,
    top_p: float = 1.0,
    cache: bool = True,
) -> torch.Tensor:
    """Extend ``prompt`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + new)."""
    sampling = Sampling(temperature, top_k, top_p)
    new = list(stream(model, prompt, max_new_tokens, sampling, generator, cache))
    if not new:
        return prompt
    return torch.cat((prompt, torch.stack(new, dim=1)), dim=1)
