"""The KV cache: what generation keeps between tokens, and the protocol attention may implement.

Without a cache, every new token runs the whole context through the model again. The
outputs at earlier positions never change (the model is causal), so an attention layer
may keep what it computed for them, its keys and values, and compute only the new
positions. That is an opt-in protocol, for attention plugins:

    def forward_cached(self, x, positional, cache: LayerCache) -> torch.Tensor

- ``x`` (B, T, d_model) holds the *new* positions: ``cache.offset .. cache.offset + T - 1``
  of the context; the layer saw positions ``0 .. cache.offset - 1`` in earlier calls.
- ``cache.state`` is whatever this method stored at its previous call (None at the
  first); store what the next call needs there (keys and values; a running state).
- Return what ``forward(all inputs so far, positional)[:, -T:]`` would (to rounding).
- Ask the positional encoding through ``rotate_at(positional, q, k, offset)`` and
  ``score_bias_at(positional, T, offset)``, which work with any ``Positional``.

The built-in softmax attentions keep keys and values (the kv heads only under GQA; the
last ``window - 1`` positions only with a sliding window); ``linear`` keeps its running
sums, so each new token costs the same however long the context. Any other attention
module, a third-party one without ``forward_cached``, keeps working: its layer keeps its
inputs and recomputes its forward over all of them (correct, and slower). Training never
touches any of this: ``LanguageModel.forward`` takes no cache.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tel_core.model.nn import Positional


class KVCache:
    """What a model keeps between generation steps: one ``LayerCache`` per block, and how
    many positions of the context they hold (``offset``)."""

    def __init__(self, n_layers: int) -> None:
        self.offset = 0
        self.layers = [LayerCache(self) for _ in range(n_layers)]

    def advance(self, n: int) -> None:
        self.offset += n

    def reset(self) -> None:
        """Forget everything: the next call starts a new context at position 0."""
        self.offset = 0
        for layer in self.layers:
            layer.state = None


class LayerCache:
    """One layer's share of a ``KVCache``: ``state`` is the attention's to fill.

    An attention that implements ``forward_cached(x, positional, cache)`` receives its
    layer's ``LayerCache``: ``x`` (B, T, d_model) holds the new positions ``offset ..
    offset + T - 1``; ``state`` is what the previous call stored (None at the first);
    the method returns what ``forward`` on the whole context would give at those T
    positions, asking the positional encoding through ``rotate_at`` and ``score_bias_at``.
    """

    def __init__(self, owner: KVCache) -> None:
        self._owner = owner
        self.state: Any = None

    @property
    def offset(self) -> int:
        """The position of the first new token: how many the layer has seen before."""
        return self._owner.offset


def implements_cache(attention: nn.Module) -> bool:
    """Whether an attention module implements the protocol (``forward_cached``)."""
    return callable(getattr(attention, "forward_cached", None))


def attend_cached(
    attention: nn.Module, x: torch.Tensor, positional: Positional, cache: LayerCache
) -> torch.Tensor:
    """The attention's output at the new positions ``x``, through its cache if it has one."""
    if implements_cache(attention):
        return attention.forward_cached(x, positional, cache)
    # Recompute: keep the layer's inputs, run its ordinary forward over all of them (it
    # sees the context from position 0, as in training) and keep the new positions.
    inputs = x if cache.state is None else torch.cat((cache.state, x), dim=1)
    cache.state = inputs
    return attention(inputs, positional)[:, -x.size(1) :]


# -- the positional encoding at an offset -----------------------------------------------


@functools.cache
def _takes_offset(method: Callable) -> bool:
    try:
        return "offset" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _offset_method(positional: Positional, name: str) -> Callable | None:
    """The bound method if its function accepts ``offset``; None for the fallback."""
    method = getattr(positional, name)
    function = getattr(method, "__func__", method)
    return method if _takes_offset(function) else None


def _in_front(x: torch.Tensor, offset: int) -> torch.Tensor:
    """``x`` (..., T, D) preceded by ``offset`` zero positions along dim -2."""
    zeros = x.new_zeros((*x.shape[:-2], offset, x.shape[-1]))
    return torch.cat((zeros, x), dim=-2)


def embed_at(positional: Positional, x: torch.Tensor, offset: int) -> torch.Tensor:
    """``positional.embed`` of tokens at positions ``offset ..`` (B, T, C)."""
    if offset == 0:
        return positional.embed(x)
    if (embed := _offset_method(positional, "embed")) is not None:
        return embed(x, offset=offset)
    # An encoding without offsets: embed a longer sequence, keep the last positions
    # (each position is embedded on its own, which check_positional asserts).
    return positional.embed(_in_front(x, offset))[:, offset:]


def rotate_at(
    positional: Positional, q: torch.Tensor, k: torch.Tensor, offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``positional.rotate`` of q and k (B, nh, T, hs) at positions ``offset ..``."""
    if offset == 0:
        return positional.rotate(q, k)
    if (rotate := _offset_method(positional, "rotate")) is not None:
        return rotate(q, k, offset=offset)
    rq, rk = positional.rotate(_in_front(q, offset), _in_front(k, offset))
    return rq[..., offset:, :], rk[..., offset:, :]


def score_bias_at(positional: Positional, seq_len: int, offset: int) -> torch.Tensor | None:
    """The score bias of queries at ``offset .. offset + seq_len - 1`` against keys at
    ``0 .. offset + seq_len - 1`` (broadcastable to (B, nh, seq_len, offset + seq_len)),
    or None."""
    if offset == 0:
        return positional.score_bias(seq_len)
    if (score_bias := _offset_method(positional, "score_bias")) is not None:
        return score_bias(seq_len, offset=offset)
    bias = positional.score_bias(offset + seq_len)
    if bias is None or bias.dim() < 2 or bias.size(-2) == 1:  # the same for every query
        return bias
    return bias[..., offset:, :]
