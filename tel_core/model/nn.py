"""Torch building blocks shared by the model skeleton and model plugins."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
from torch import nn

from tel_core.errors import TelError

_RESIDUAL = "_tel_residual_projection"
_ATTENTION = "_tel_attention"


class Positional(nn.Module):
    """Base class of positional encodings: override any of the three parts.

    - ``embed``: add position information to the token embeddings (learned, sinusoidal);
    - ``rotate``: transform queries and keys inside attention (RoPE);
    - ``score_bias``: a bias added to the attention scores (ALiBi).

    Attention variants call ``rotate`` and ``score_bias`` on whatever encoding the
    experiment chose, so any attention combines with any positional encoding.

    ``offset`` serves generation with a KV cache (``tel_core.model.kv_cache``): the T positions
    handed in are positions ``offset .. offset + T - 1`` of the sequence, not 0 .. T - 1.
    Training always passes 0. An encoding whose methods take no ``offset`` still works
    with the cache, through a slower fallback.
    """

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: token embeddings (B, T, C) at positions offset.. -> (B, T, C)."""
        return x

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (B, n_heads, T, head_dim) at positions offset.. -> the same shapes."""
        return q, k

    def score_bias(self, seq_len: int, offset: int = 0) -> torch.Tensor | None:
        """None, or a bias broadcastable to the scores (B, n_heads, T, T).

        With an offset: the rows of queries at positions ``offset .. offset + seq_len - 1``
        against keys at ``0 .. offset + seq_len - 1``, broadcastable to
        (B, n_heads, seq_len, offset + seq_len).
        """
        return None


def mark_residual_projection(layer: nn.Linear) -> nn.Linear:
    """Mark the linear layer that writes a block's output into the residual stream.

    The model initialises its weights with std 0.02 / sqrt(2 * n_layers) (GPT-2), so that
    the residual stream's variance does not grow with depth.
    """
    setattr(layer, _RESIDUAL, True)
    return layer


def is_residual_projection(module: nn.Module) -> bool:
    return getattr(module, _RESIDUAL, False)


# -- attention probabilities ------------------------------------------------------------


class Attention(nn.Module):
    """Optional base class of attention variants: it carries the probability hand-off.

    Attention probabilities (for probes of entropy, attention distance, heatmaps) are
    costly, so nobody computes them unless asked. ``record_attention(model)`` asks: while
    it is open, ``self.recording`` is true, and a variant that can (``can_record = True``)
    passes its probabilities, (B, n_heads, T, T), each row summing to one, to
    ``self.record(p)`` in ``forward``. A fast path that never forms them (SDPA) may switch
    to its eager maths while recording; outside it, nothing changes.
    """

    #: Whether ``forward`` hands its probabilities to ``record`` while recording.
    can_record: ClassVar[bool] = False
    #: Shown when a variant that cannot record is asked to.
    cannot_record_because: ClassVar[str] = "it does not hand out attention probabilities"

    _sink: Callable[[torch.Tensor], None] | None = None

    @property
    def recording(self) -> bool:
        return self._sink is not None

    def record(self, probabilities: torch.Tensor) -> None:
        """Hand (B, n_heads, T, T) probabilities to whoever is recording (or to no one)."""
        if self._sink is not None:
            self._sink(probabilities)


def mark_attention(module: nn.Module) -> nn.Module:
    """Mark a block's attention module, so that ``record_attention`` finds every one of
    them, including third-party modules that do not subclass ``Attention``."""
    setattr(module, _ATTENTION, True)
    return module


@contextlib.contextmanager
def record_attention(
    model: nn.Module, detach: bool = True
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the attention probabilities of every attention layer of ``model``.

    Yields a dict from each layer's module name (``"blocks.0.attn"``) to the list of
    probabilities it computed, one (B, n_heads, T, T) tensor per forward pass inside the
    ``with`` block, in call order; detached unless ``detach=False``::

        with record_attention(model) as probs:
            model(idx)
        heatmap = probs["blocks.0.attn"][0][0, head]  # (T, T)

    Raises ``TelError`` naming every layer that cannot hand out its probabilities.
    Each tensor holds B * n_heads * T * T numbers: record short batches.
    """
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if getattr(m, _ATTENTION, False) or isinstance(m, Attention)
    ]
    if not layers:
        raise TelError(f"{type(model).__name__} has no attention layers to record")
    unable = [
        f"{name} ({type(m).__name__}: "
        f"{getattr(m, 'cannot_record_because', Attention.cannot_record_because)})"
        for name, m in layers
        if not (isinstance(m, Attention) and m.can_record)
    ]
    if unable:
        raise TelError(f"cannot record attention probabilities of {'; '.join(unable)}")
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
    previous = [m._sink for _, m in layers]

    def sink(into: list[torch.Tensor], outer: Callable | None) -> Callable[[torch.Tensor], None]:
        def hand_off(p: torch.Tensor) -> None:
            into.append(p.detach() if detach else p)
            if outer is not None:  # an enclosing recording gets its copy too
                outer(p)

        return hand_off

    for (name, m), outer in zip(layers, previous, strict=True):
        m._sink = sink(recorded[name], outer)
    try:
        yield recorded
    finally:
        for (_, m), outer in zip(layers, previous, strict=True):
            m._sink = outer
