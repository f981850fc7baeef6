"""Rotary position embeddings (Su et al., 2021): rotate q and k by position-dependent angles.

The dot product of a rotated query at position m and a rotated key at position n depends
only on m - n, so attention sees relative positions; nothing is added to the embeddings.
"""

from __future__ import annotations

import attrs
import torch

from tel_core.plugin import ModelContext, Positional, hookimpl


@attrs.frozen
class RoPEOptions:
    #: Base of the rotation frequencies: head-dim pair i turns by theta^(-i/half) per token.
    theta: float = attrs.field(default=10000.0, validator=attrs.validators.gt(0))
    #: The share of each head's dimensions that is rotated (the rest pass through).
    fraction: float = attrs.field(
        default=1.0, validator=[attrs.validators.gt(0), attrs.validators.le(1)]
    )


def rotary_dims(options: RoPEOptions, ctx: ModelContext) -> int:
    return int(ctx.head_dim * options.fraction)


def check_rope(options: RoPEOptions, ctx: ModelContext) -> None:
    """Dimensions turn in pairs: the rotated share of a head must be even (and not empty)."""
    rotated = rotary_dims(options, ctx)
    if rotated < 2 or rotated % 2:
        raise ValueError(
            f"rope rotates {rotated} of {ctx.head_dim} head dims (d_model {ctx.d_model} / "
            f"n_heads {ctx.n_heads} * fraction {options.fraction}); it needs an even number >= 2"
        )


class RoPE(Positional):
    """Rotates the first ``fraction`` of each head's dimensions, in pairs (GPT-NeoX layout)."""

    def __init__(self, options: RoPEOptions, ctx: ModelContext) -> None:
        super().__init__()
        self.rotary_dim = rotary_dims(options, ctx)
        half = self.rotary_dim // 2
        # theta^(-i/half), computed as transformers' Llama does it (to the last bit, so
        # that an export to LlamaForCausalLM gives the very same logits).
        exponents = torch.arange(0, 2 * half, 2, dtype=torch.int64).float() / (2 * half)
        inv_freq = 1.0 / (options.theta**exponents)
        angles = torch.outer(torch.arange(ctx.block_size, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)  # (block_size, half)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._rotate(q, offset), self._rotate(k, offset)

    def _rotate(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        T = x.size(-2)
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        x1, x2 = rot.chunk(2, dim=-1)  # (B, nh, T, half) each
        angles = slice(offset, offset + T)
        cos, sin = self.cos[angles].to(x.dtype), self.sin[angles].to(x.dtype)
        rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return torch.cat((rotated, rest), dim=-1)


@hookimpl
def register_positional(register):
    register("rope", RoPE, options=RoPEOptions, check=check_rope)
