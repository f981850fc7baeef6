"""The decoder-only language model, assembled from the experiment's plugins.

The skeleton is fixed: token embedding, positional encoding, ``n_layers`` blocks
(attention and feed-forward, each a residual branch), a final norm and the LM head.
What fills it (attention, positional encoding, norm, feed-forward) is chosen by name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import attrs
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tel_core.config.schema import ModelConfig
from tel_core.errors import ConfigError
from tel_core.model.kv_cache import KVCache, LayerCache, attend_cached, embed_at
from tel_core.model.nn import Positional, is_residual_projection, mark_attention
from tel_core.registry.interfaces import ModelContext, ParameterGroups
from tel_core.registry.registry import MODEL_KINDS, Registry


@attrs.frozen
class ModelParts:
    """Constructors for the parts of a model, already bound to their options; attention
    and feed-forward take the index of the block they are built for."""

    attention: Callable[[int], nn.Module]
    positional: Callable[[], Positional]
    norm: Callable[[int], nn.Module]
    ffn: Callable[[int], nn.Module]


def model_context(cfg: ModelConfig, block_size: int, registry: Registry) -> ModelContext:
    """What the model's components are told about the model (building nothing yet)."""

    def norm(dim: int) -> nn.Module:
        return registry.build("norm", cfg.norm, dim)

    return ModelContext(
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_layers=cfg.n_layers,
        block_size=block_size,
        dropout=cfg.dropout,
        bias=cfg.bias,
        make_norm=norm,
    )


def check_model(
    cfg: ModelConfig,
    block_size: int,
    registry: Registry,
    where: Callable[[str], str] = lambda kind: f"[model.{kind}]",
) -> None:
    """Run the ``check`` of every selected model component; ``where(kind)`` locates errors.

    Components are checked before any is built, so that an impossible combination is one
    clear line naming the keys rather than a shape error deep inside a constructor.
    """
    ctx = model_context(cfg, block_size, registry)
    for kind in MODEL_KINDS:  # each is also the ModelConfig field that selects it
        try:
            registry.check(kind, getattr(cfg, kind), ctx)
        except ConfigError as exc:
            raise ConfigError(f"{where(kind)}: {exc}") from None


def model_parts(cfg: ModelConfig, block_size: int, registry: Registry) -> ModelParts:
    check_model(cfg, block_size, registry)
    ctx = model_context(cfg, block_size, registry)
    norm = ctx.make_norm
    return ModelParts(
        attention=lambda i: registry.build("attention", cfg.attention, attrs.evolve(ctx, layer=i)),
        positional=lambda: registry.build("positional", cfg.positional, ctx),
        norm=norm,
        ffn=lambda i: registry.build("ffn", cfg.ffn, attrs.evolve(ctx, layer=i)),
    )


class Block(nn.Module):
    """One transformer layer: an attention branch and a feed-forward branch.

    pre:      x = x + attn(norm(x));        x = x + ffn(norm(x))
    post:     x = norm(x + attn(x));        x = norm(x + ffn(x))   (the original transformer)
    sandwich: x = x + norm(attn(norm(x)));  x = x + norm(ffn(norm(x)))   (CogView)

    Sandwich keeps pre-LN's clean residual stream but also normalises what each branch
    writes into it, so no branch can swamp the stream.
    """

    def __init__(self, cfg: ModelConfig, parts: ModelParts, layer: int) -> None:
        super().__init__()
        self.placement = cfg.norm_placement
        self.norm_attn = parts.norm(cfg.d_model)
        self.attn = mark_attention(parts.attention(layer))
        self.norm_ffn = parts.norm(cfg.d_model)
        self.ffn = parts.ffn(layer)
        if self.placement == "sandwich":  # a second norm on each branch's output
            self.norm_attn_out = parts.norm(cfg.d_model)
            self.norm_ffn_out = parts.norm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)  # on each branch, before the residual add

    def forward(
        self, x: torch.Tensor, positional: Positional, cache: LayerCache | None = None
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). With a ``cache`` (generation), x holds only the new
        positions and attention goes through the KV cache (``tel_core.model.kv_cache``)."""
        attn = self.attn
        if cache is not None:
            attn = functools.partial(attend_cached, self.attn, cache=cache)
        if self.placement == "pre":
            x = x + self.dropout(attn(self.norm_attn(x), positional))
            x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        elif self.placement == "sandwich":
            x = x + self.dropout(self.norm_attn_out(attn(self.norm_attn(x), positional)))
            x = x + self.dropout(self.norm_ffn_out(self.ffn(self.norm_ffn(x))))
        else:
            x = self.norm_attn(x + self.dropout(attn(x, positional)))
            x = self.norm_ffn(x + self.dropout(self.ffn(x)))
        return x


class LanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig, parts: ModelParts, vocab_size: int, block_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        #: Rows of the embedding and the LM head: vocab_size rounded up to vocab_multiple.
        self.padded_vocab_size = -(-vocab_size // cfg.vocab_multiple) * cfg.vocab_multiple
        self.block_size = block_size
        self.token_embedding = nn.Embedding(self.padded_vocab_size, cfg.d_model)
        self.positional = parts.positional()
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, parts, i) for i in range(cfg.n_layers))
        # Post-LN blocks already end in a norm; a second one in a row would add nothing.
        post = cfg.norm_placement == "post"
        self.final_norm = nn.Identity() if post else parts.norm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, self.padded_vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embedding.weight
        #: Recompute each block's activations during the backward pass instead of keeping
        #: them (set by the training loop from [train] activation_checkpointing).
        self.activation_checkpointing = False
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2 initialisation; a part with an ``init_weights`` method then sets its own."""
        std = 0.02
        residual_std = std / math.sqrt(2 * self.cfg.n_layers)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(
                    module.weight, 0.0, residual_std if is_residual_projection(module) else std
                )
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
        for module in self.modules():
            if module is not self and callable(getattr(module, "init_weights", None)):
                module.init_weights()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: token ids (B, T) -> logits (B, T, vocab_size)."""
        x = self.positional.embed(self.token_embedding(idx))  # (B, T, C)
        x = self.dropout(x)
        for block in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, self.positional, use_reentrant=False)
            else:
                x = block(x, self.positional)
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output (B, T, C) -> logits (B, T, vocab_size): the final norm,
        the LM head, and the padded rows' logits cut off (a view: nothing is copied)."""
        logits = self.lm_head(self.final_norm(x))
        if self.padded_vocab_size != self.vocab_size:
            logits = logits[..., : self.vocab_size]
        return logits

    def new_cache(self) -> KVCache:
        """An empty KV cache for ``forward_cached``: one layer cache per block."""
        return KVCache(len(self.blocks))

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The next tokens of a context whose first ``cache.offset`` tokens the cache holds:
        idx (B, T) -> logits (B, T, vocab_size), equal to ``forward`` on the whole context
        (at its last T positions) up to rounding. For generation; training never calls it.
        """
        if cache.offset + idx.size(1) > self.block_size:
            raise ValueError(
                f"the context would hold {cache.offset + idx.size(1)} tokens, more than "
                f"block_size {self.block_size}: reset the cache and start a shorter context"
            )
        x = embed_at(self.positional, self.token_embedding(idx), cache.offset)
        x = self.dropout(x)
        for block, layer in zip(self.blocks, cache.layers, strict=True):
            x = block(x, self.positional, layer)
        cache.advance(idx.size(1))
        return self.logits(x)

    def num_parameters(self) -> int:
        """Trainable parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 per weight, plus attention over a full block.

        The PaLM estimate (appendix B): 6N for the matrix multiplies of the forward and
        backward passes, and 12 * n_layers * d_model * T for attention scores and values.
        Embedding lookups are free, but the LM head is a real matrix multiply.
        """
        groups = parameter_groups(self)  # the LM head is with the embeddings, tied or not
        n = sum(p.numel() for p in groups.matrices) + self.lm_head.weight.numel()
        attention = 12 * self.cfg.n_layers * self.cfg.d_model * self.block_size
        return 6 * n + attention


def build_model(
    cfg: ModelConfig, vocab_size: int, block_size: int, registry: Registry
) -> LanguageModel:
    return LanguageModel(cfg, model_parts(cfg, block_size, registry), vocab_size, block_size)


def parameter_groups(model: nn.Module) -> ParameterGroups:
    """Sort trainable parameters into matrices, embeddings and vectors (each once).

    The LM head is an embedding, tied or not: it is the output embedding table (a row per
    token), and ``tie_embeddings`` must not change what weight decay touches.
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    if isinstance(head := getattr(model, "lm_head", None), nn.Linear):
        embedding_ids.add(id(head.weight))
    matrices, embeddings, vectors = [], [], []
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        if not p.requires_grad:
            continue
        if id(p) in embedding_ids:
            embeddings.append(p)
        elif p.dim() >= 2:
            matrices.append(p)
        else:
            vectors.append(p)
    return ParameterGroups(matrices=matrices, embeddings=embeddings, vectors=vectors)
