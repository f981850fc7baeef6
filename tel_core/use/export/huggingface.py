"""``tel export --format hf``: a ``transformers`` model directory, for the models that map.

Two of tel's combinations are exactly a model that ``transformers`` knows:

- GPT-2 (``GPT2LMHeadModel``): learned positions, LayerNorm, a GELU MLP, pre-LN;
- Llama (``LlamaForCausalLM``): RoPE (all of each head rotated), RMSNorm, SwiGLU,
  pre-LN, with or without grouped-query attention;

with a softmax attention (``causal``, ``eager`` or ``manual``: the same function) without
a sliding window or QK-norm. Biases tel leaves out are written as zeros where GPT-2 has
them. The mapping knows tel's built-in components by name, and only the built-ins (a
third-party component of the same kind has no known counterpart). After writing, the
export is loaded back with ``transformers`` and run beside tel's model on a check batch:
the largest logit difference is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tel_core.config.schema import Experiment, Selection
from tel_core.errors import TelError, require
from tel_core.use.export.result import ExportResult
from tel_core.use.load_run import LoadedRun

SOFTMAX_ATTENTION = ("causal", "eager", "manual")


def export_hf(loaded: LoadedRun, out_dir: Path) -> ExportResult:
    require("transformers", "tel export --format hf")
    from transformers.utils import logging

    logging.disable_progress_bar()  # per-shard progress bars for a model of a few MB
    try:
        return _export_hf(loaded, out_dir)
    finally:
        logging.enable_progress_bar()


def _export_hf(loaded: LoadedRun, out_dir: Path) -> ExportResult:
    exp = loaded.experiment
    architecture = hf_architecture(exp, loaded)
    tokenizer = loaded.tokenizer.to_huggingface()
    if tokenizer is None:
        raise TelError(
            f"tel export --format hf: tokenizer {exp.data.tokenizer.name!r} has no Hugging "
            f"Face counterpart (it does not implement to_huggingface())"
        )
    weights = {k: v.detach().float().cpu() for k, v in loaded.model.state_dict().items()}
    vocab = loaded.model.vocab_size
    for name in ("token_embedding.weight", "lm_head.weight"):  # the vocab_multiple padding
        weights[name] = weights[name][:vocab]
    build, convert = (
        (_gpt2_model, _gpt2_weights)
        if architecture == "GPT2LMHeadModel"
        else (_llama_model, _llama_weights)
    )
    hf_model = build(exp, loaded, weights)
    mapped = convert(exp, weights, hf_model.config)
    missing, unexpected = hf_model.load_state_dict(mapped, strict=False)
    tied = {"lm_head.weight"} if exp.model.tie_embeddings else set()
    if set(missing) - tied or unexpected:  # a bug in the mapping, not a user's mistake
        raise RuntimeError(f"hf export: missing {missing}, unexpected {unexpected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out_dir)
    _save_tokenizer(tokenizer, loaded, out_dir)
    difference = logit_difference(loaded, out_dir)
    files = tuple(sorted(p.name for p in out_dir.iterdir()))
    return ExportResult(out_dir, "hf", architecture, files, difference)


# -- which architecture ----------------------------------------------------------------


def hf_architecture(exp: Experiment, loaded: LoadedRun) -> str:
    """GPT2LMHeadModel or LlamaForCausalLM, or one line naming what has no counterpart."""
    model = exp.model
    cannot = "tel export --format hf: "

    def builtin(kind: str, selection: Selection) -> str:
        source = loaded.registry.get(kind, selection.name).source
        return selection.name if source.distribution == "tel" else f"third-party {selection.name}"

    positional = builtin("positional", model.positional)
    if positional == "learned":
        target, norm, ffn = "GPT2LMHeadModel", "layernorm", "mlp"
    elif positional == "rope":
        target, norm, ffn = "LlamaForCausalLM", "rmsnorm", "swiglu"
        if model.positional.options.fraction != 1.0:
            raise TelError(
                f"{cannot}rope with fraction = {model.positional.options.fraction} has no "
                f"counterpart (Llama rotates every dimension of a head)"
            )
    else:
        raise TelError(
            f"{cannot}positional {positional!r} has no counterpart (GPT-2 takes learned "
            f"positions, Llama rope)"
        )
    name = "GPT-2" if target.startswith("GPT2") else "Llama"
    if builtin("norm", model.norm) != norm:
        raise TelError(
            f"{cannot}norm {model.norm.name!r} has no {name} counterpart ({name}: {norm})"
        )
    if builtin("ffn", model.ffn) != ffn:
        raise TelError(f"{cannot}ffn {model.ffn.name!r} has no {name} counterpart ({name}: {ffn})")
    if ffn == "mlp" and model.ffn.options.activation != "gelu":
        raise TelError(
            f"{cannot}ffn 'mlp' with activation {model.ffn.options.activation!r} has no "
            f"GPT-2 counterpart (GPT-2: gelu)"
        )
    if model.norm_placement != "pre":
        raise TelError(
            f"{cannot}norm_placement {model.norm_placement!r} has no {name} counterpart "
            f'({name}: "pre")'
        )
    attention = builtin("attention", model.attention)
    options = model.attention.options
    if attention not in SOFTMAX_ATTENTION:
        raise TelError(
            f"{cannot}attention {attention!r} has no {name} counterpart (softmax attention: "
            f"{', '.join(SOFTMAX_ATTENTION)})"
        )
    if options.window is not None:
        raise TelError(f"{cannot}attention with a sliding window has no {name} counterpart")
    if options.qk_norm:
        raise TelError(f"{cannot}attention with qk_norm has no {name} counterpart")
    if target.startswith("GPT2") and options.n_kv_heads not in (None, model.n_heads):
        raise TelError(
            f"{cannot}attention with n_kv_heads = {options.n_kv_heads} (grouped-query) has no "
            f"GPT-2 counterpart; Llama has it (rope, rmsnorm, swiglu)"
        )
    return target


# -- GPT-2 ---------------------------------------------------------------------------------


def _gpt2_model(exp: Experiment, loaded: LoadedRun, weights: dict[str, torch.Tensor]) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    model, eos = exp.model, loaded.tokenizer.eos_id
    config = GPT2Config(
        vocab_size=loaded.model.vocab_size,
        n_positions=exp.data.block_size,
        n_embd=model.d_model,
        n_layer=model.n_layers,
        n_head=model.n_heads,
        n_inner=weights["blocks.0.ffn.up.weight"].shape[0],
        activation_function="gelu",  # exact (erf) GELU, as torch's nn.GELU()
        resid_pdrop=model.dropout,
        embd_pdrop=model.dropout,
        attn_pdrop=model.dropout,
        layer_norm_epsilon=model.norm.options.eps,
        tie_word_embeddings=model.tie_embeddings,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    return GPT2LMHeadModel(config).eval()


def _gpt2_weights(
    exp: Experiment, w: dict[str, torch.Tensor], config: Any
) -> dict[str, torch.Tensor]:
    """tel's names and shapes -> GPT-2's (Conv1D keeps its weights as (in, out))."""
    C = exp.model.d_model
    out = {
        "transformer.wte.weight": w["token_embedding.weight"],
        "transformer.wpe.weight": w["positional.table.weight"],
    }
    for i in range(exp.model.n_layers):
        t, h = f"blocks.{i}.", f"transformer.h.{i}."
        pairs = {
            "ln_1": "norm_attn",
            "attn.c_attn": "attn.qkv",
            "attn.c_proj": "attn.out",
            "ln_2": "norm_ffn",
            "mlp.c_fc": "ffn.up",
            "mlp.c_proj": "ffn.down",
        }
        for hf, tel in pairs.items():
            weight = w[f"{t}{tel}.weight"]
            linear = not hf.startswith("ln_")
            out[f"{h}{hf}.weight"] = weight.t().contiguous() if linear else weight
            out[f"{h}{hf}.bias"] = w.get(f"{t}{tel}.bias", _zeros(weight.shape[0]))
    out["transformer.ln_f.weight"] = w["final_norm.weight"]
    out["transformer.ln_f.bias"] = w.get("final_norm.bias", _zeros(C))
    out["lm_head.weight"] = w["lm_head.weight"]
    return out


# -- Llama ---------------------------------------------------------------------------------


def _llama_model(exp: Experiment, loaded: LoadedRun, weights: dict[str, torch.Tensor]) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    model, eos = exp.model, loaded.tokenizer.eos_id
    config = LlamaConfig(
        vocab_size=loaded.model.vocab_size,
        hidden_size=model.d_model,
        intermediate_size=weights["blocks.0.ffn.gate.weight"].shape[0],
        num_hidden_layers=model.n_layers,
        num_attention_heads=model.n_heads,
        num_key_value_heads=model.attention.options.n_kv_heads or model.n_heads,
        head_dim=model.d_model // model.n_heads,
        hidden_act="silu",
        max_position_embeddings=exp.data.block_size,
        rms_norm_eps=model.norm.options.eps,
        tie_word_embeddings=model.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": model.positional.options.theta},
        attention_bias=model.bias,
        attention_dropout=model.dropout,
        mlp_bias=model.bias,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    return LlamaForCausalLM(config).eval()


def _llama_weights(
    exp: Experiment, w: dict[str, torch.Tensor], config: Any
) -> dict[str, torch.Tensor]:
    C = exp.model.d_model
    kv = config.num_key_value_heads * config.head_dim
    out = {"model.embed_tokens.weight": w["token_embedding.weight"]}
    for i in range(exp.model.n_layers):
        t, h = f"blocks.{i}.", f"model.layers.{i}."
        out[f"{h}input_layernorm.weight"] = w[f"{t}norm_attn.weight"]
        out[f"{h}post_attention_layernorm.weight"] = w[f"{t}norm_ffn.weight"]
        # tel's one qkv matrix is q, k and v stacked: (C + 2 kv, C)
        for name, rows in zip("qkv", _split(C, kv), strict=True):
            out[f"{h}self_attn.{name}_proj.weight"] = w[f"{t}attn.qkv.weight"][rows]
            if exp.model.bias:
                out[f"{h}self_attn.{name}_proj.bias"] = w[f"{t}attn.qkv.bias"][rows]
        _linear(out, w, f"{h}self_attn.o_proj", f"{t}attn.out")
        for name in ("gate", "up", "down"):
            _linear(out, w, f"{h}mlp.{name}_proj", f"{t}ffn.{name}")
    out["model.norm.weight"] = w["final_norm.weight"]
    out["lm_head.weight"] = w["lm_head.weight"]
    return out


def _split(C: int, kv: int) -> tuple[slice, slice, slice]:
    return slice(0, C), slice(C, C + kv), slice(C + kv, C + 2 * kv)


def _linear(out: dict, w: dict, hf: str, tel: str) -> None:
    out[f"{hf}.weight"] = w[f"{tel}.weight"]
    if f"{tel}.bias" in w:
        out[f"{hf}.bias"] = w[f"{tel}.bias"]


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n)


# -- tokenizer and check ------------------------------------------------------------------


def _save_tokenizer(tokenizer: Any, loaded: LoadedRun, out_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    eos = loaded.tokenizer.eos_id
    special: dict[str, str] = {}
    if eos is not None:
        special["eos_token"] = tokenizer.id_to_token(eos)
    unknown = getattr(tokenizer.model, "unk_token", None)
    if unknown:
        special["unk_token"] = unknown
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special).save_pretrained(out_dir)


def logit_difference(
    loaded: LoadedRun, out_dir: Path, load: Callable[[Path], Any] | None = None
) -> float:
    """Load the export with ``transformers.AutoModelForCausalLM`` and compare its logits
    with tel's on a fixed batch of random ids over the whole block: the largest gap."""
    from transformers import AutoModelForCausalLM

    hf_model = (load or AutoModelForCausalLM.from_pretrained)(out_dir).eval()
    generator = torch.Generator().manual_seed(0)
    vocab, block = loaded.model.vocab_size, loaded.trained_block_size
    ids = torch.randint(vocab, (2, block), generator=generator)
    model = loaded.model.float().cpu().eval()
    with torch.no_grad():
        ours = model(ids)
        theirs = hf_model(ids).logits
    loaded.model.to(loaded.device)
    return (ours - theirs).abs().max().item()
