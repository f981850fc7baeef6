"""Causal linear attention (Katharopoulos et al., 2020): O(T) in sequence length.

Softmax attention weighs value j for query i by exp(q_i·k_j). Replace that by
φ(q_i)·φ(k_j) for a positive feature map φ (here elu(x) + 1) and the sums factor:

    y_i = Σ_{j<=i} φ(q_i)·φ(k_j) v_j / Σ_{j<=i} φ(q_i)·φ(k_j)
        = φ(q_i) S_i / φ(q_i)·z_i,   S_i = Σ_{j<=i} φ(k_j) v_jᵀ (hs x hs),  z_i = Σ_{j<=i} φ(k_j)

so a running sum replaces the (T, T) matrix: time and memory grow linearly with T. The
sequence is walked in chunks: inside a chunk a small masked (L, L) product, across chunks
the running sums S and z. Any chunk size gives the same result.

No score matrix means no score bias: a positional encoding that biases scores (ALiBi)
is refused with a clear error. There is no attention dropout either. While recording,
the normalised weights φ(q_i)·φ(k_j) / Σ_l φ(q_i)·φ(k_l) are handed out: they play the
part of softmax probabilities (each row sums to one), at the cost of forming them.

Generation keeps S and z (per kv head) as its KV cache (``tel_core.model.kv_cache``): each new
token then costs the same, however long the context already is.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from tel_core.plugin import (
    ConfigError,
    LayerCache,
    ModelContext,
    Positional,
    hookimpl,
    score_bias_at,
)
from tel_plugins.attention.multihead import HeadOptions, MultiHeadAttention, allowed, check_heads


@attrs.frozen(kw_only=True)
class LinearOptions(HeadOptions):
    #: Positions handled together: memory grows with chunk_size², loop steps with
    #: T / chunk_size. The result does not depend on it.
    chunk_size: int = attrs.field(default=64, validator=attrs.validators.ge(1))


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1: positive everywhere, so every weight (and every denominator) is > 0."""
    return F.elu(x) + 1.0


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention. q, k: features φ(q), φ(k); q, k, v (B, nh, T, hs)."""
    B, nh, _, hs = q.shape
    S = q.new_zeros(B, nh, hs, v.size(-1))  # Σ φ(k_j) v_jᵀ over the chunks done so far
    z = q.new_zeros(B, nh, hs, 1)  # Σ φ(k_j)
    return running_linear_attention(q, k, v, S, z, chunk_size, eps)[0]


def running_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    S: torch.Tensor,
    z: torch.Tensor,
    chunk_size: int,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Continue running sums S (..., hs, hs) and z (..., hs, 1) over the positions of
    φ(q), φ(k), v (..., T, hs); returns the output (..., T, hs) and the new S and z.

    Leading dimensions broadcast: queries grouped as (B, nkv, group, T, hs) share the
    sums of their kv head, (B, nkv, 1, ...), as GQA's cache wants.
    """
    T = q.size(-2)
    out = []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (t[..., start : start + chunk_size, :] for t in (q, k, v))  # (.., L, hs)
        L = qc.size(-2)
        weights = (qc @ kc.transpose(-2, -1)).masked_fill(~allowed(L, None, q.device), 0.0)
        numerator = qc @ S + weights @ vc  # earlier chunks + this chunk, (..., L, hs)
        denominator = qc @ z + weights.sum(dim=-1, keepdim=True)  # (..., L, 1)
        out.append(numerator / (denominator + eps))
        S = S + kc.transpose(-2, -1) @ vc
        z = z + kc.sum(dim=-2).unsqueeze(-1)
    return torch.cat(out, dim=-2), S, z


def refuse_score_bias() -> None:
    raise ConfigError(
        "attention 'linear' never forms attention scores, so it cannot add the "
        "positional encoding's score bias (such as ALiBi); choose one that embeds "
        "or rotates"
    )


class LinearAttention(MultiHeadAttention):
    """Causal linear attention with elu + 1 features and running sums."""

    can_record = True

    def __init__(self, options: LinearOptions, ctx: ModelContext) -> None:
        super().__init__(options, ctx)
        self.chunk_size = options.chunk_size

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if bias is not None:
            refuse_score_bias()
        dtype = q.dtype
        # Running sums over a whole sequence grow with its length: in float16 the
        # denominator passes 65,504 within a block of 1024 and the output turns to 0; in
        # bfloat16 they lose percents. So they run in float32 with autocast off: under
        # autocast, float32 inputs alone would be cast back down by the next matmul.
        with torch.autocast(q.device.type, enabled=False):
            q, k, v = feature_map(q.float()), feature_map(k.float()), v.float()
            if self.recording:
                weights = (q @ k.transpose(-2, -1)).masked_fill(
                    ~allowed(q.size(-2), None, q.device), 0.0
                )
                self.record((weights / weights.sum(dim=-1, keepdim=True)).to(dtype))
            y = linear_attention(q, k, v, self.chunk_size)
        return y.to(dtype)

    def forward_cached(
        self, x: torch.Tensor, positional: Positional, cache: LayerCache
    ) -> torch.Tensor:
        """The KV cache protocol: cache.state holds the running sums (S, z) per kv head."""
        B, T, C = x.shape
        if score_bias_at(positional, T, cache.offset) is not None:
            refuse_score_bias()
        q, k, v = self.new_heads(x, positional, cache.offset)  # k, v: (B, nkv, T, hs)
        nkv, hs, dtype = self.n_kv_heads, self.head_dim, q.dtype
        with torch.autocast(q.device.type, enabled=False):  # float32 sums, as in attend
            q = feature_map(q.float()).reshape(B, nkv, self.group, T, hs)  # by kv head
            k, v = feature_map(k.float()).unsqueeze(2), v.float().unsqueeze(2)  # (B, nkv, 1, T, hs)
            if cache.state is None:
                S, z = q.new_zeros(B, nkv, 1, hs, hs), q.new_zeros(B, nkv, 1, hs, 1)
            else:
                S, z = cache.state
            y, S, z = running_linear_attention(q, k, v, S, z, self.chunk_size)
        cache.state = (S, z)
        y = y.to(dtype).view(B, self.n_heads, T, hs)
        return self.out(y.transpose(1, 2).contiguous().view(B, T, C))


@hookimpl
def register_attention(register):
    register("linear", LinearAttention, options=LinearOptions, check=check_heads)
