"""The model skeleton: causality, parameter count, initialisation, parameter groups."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from tel_core import hookimpl
from tel_core.errors import ConfigError
from tel_core.model.decoder import build_model, parameter_groups
from tel_core.model.nn import Positional
from tel_core.train.experiment import experiment_from_dict

from .flops import counted_flops_per_token

VOCAB, BLOCK = 50, 16


def tiny_model(registry, tiny, **model):
    tiny["model"].update(model)
    exp = experiment_from_dict(tiny, registry)
    torch.manual_seed(0)
    return build_model(exp.model, VOCAB, BLOCK, registry)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope", "alibi", "nope"])
@pytest.mark.parametrize("placement", ["pre", "post", "sandwich"])
def test_changing_token_t_never_changes_logits_before_t(registry, tiny, positional, placement):
    model = tiny_model(registry, tiny, positional=positional, norm_placement=placement).eval()
    idx = torch.randint(VOCAB, (2, BLOCK))
    base = model(idx)
    for t in (0, 5, BLOCK - 1):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        out = model(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"position < {t} saw the future"
        assert not torch.allclose(out[:, t:], base[:, t:]), "the change had no effect at all"


def test_parameter_count_matches_the_architecture(registry, tiny):
    d, layers = 32, 2
    model = tiny_model(registry, tiny, bias=False, norm={"name": "layernorm", "bias": False})
    per_layer = 2 * d + 4 * d * d + 8 * d * d  # two norm gains, q k v o, MLP up and down
    expected = VOCAB * d + BLOCK * d + layers * per_layer + d  # tied head; final norm gain
    assert model.num_parameters() == expected


def test_untied_head_and_biases_add_their_parameters(registry, tiny):
    tied = tiny_model(registry, tiny).num_parameters()
    untied = tiny_model(registry, tiny, tie_embeddings=False).num_parameters()
    assert untied - tied == VOCAB * 32


def test_tied_head_shares_the_embedding_tensor(registry, tiny):
    model = tiny_model(registry, tiny)
    assert model.lm_head.weight is model.token_embedding.weight


def test_residual_projections_start_smaller(registry, tiny):
    model = tiny_model(registry, tiny, d_model=128, n_layers=8)
    out = model.blocks[0].attn.out.weight.std().item()
    qkv = model.blocks[0].attn.qkv.weight.std().item()
    assert qkv == pytest.approx(0.02, rel=0.05)
    assert out == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)


def test_parameter_groups_hold_every_parameter_once(registry, tiny):
    model = tiny_model(registry, tiny)
    groups = parameter_groups(model)
    ids = [id(p) for p in groups.matrices + groups.embeddings + groups.vectors]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert model.token_embedding.weight in groups.embeddings
    assert all(p.dim() >= 2 for p in groups.matrices)
    assert all(p.dim() < 2 for p in groups.vectors)


@pytest.mark.parametrize(
    "changes",
    [
        {"tie_embeddings": True},
        {"tie_embeddings": False},  # the head counted once, tied or not
        {"attention": {"name": "causal", "n_kv_heads": 2}, "ffn": "swiglu"},
        {"attention": "eager", "positional": "rope", "norm_placement": "sandwich"},
        {"attention": "manual", "positional": "alibi", "n_layers": 3, "d_model": 48},
    ],
)
def test_flops_per_token_is_what_torch_counts_in_a_training_pass(registry, tiny, changes):
    """The PaLM estimate (6 per weight, 12 L d T for attention) against torch's own count
    of one forward and backward pass (torch.utils.flop_counter)."""
    model = tiny_model(registry, tiny, **changes)
    assert model.flops_per_token() == counted_flops_per_token(model, VOCAB, BLOCK)


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_tying_the_lm_head_changes_nothing_about_weight_decay(registry, tiny, decay_embeddings):
    """The LM head is an embedding, tied or not; decay_embeddings alone decides its decay."""

    def decayed(model) -> set[str]:
        names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
        groups = parameter_groups(model).with_weight_decay(0.1, decay_embeddings)
        return {names[id(p)] for g in groups if g["weight_decay"] for p in g["params"]}

    tied = tiny_model(registry, tiny, tie_embeddings=True)
    untied = tiny_model(registry, tiny, tie_embeddings=False)
    assert any(p is untied.lm_head.weight for p in parameter_groups(untied).embeddings)
    embeddings = {"token_embedding.weight", "lm_head.weight", "positional.table.weight"}
    assert decayed(untied) - embeddings == decayed(tied) - embeddings  # the same matrices
    assert ("lm_head.weight" in decayed(untied)) is decay_embeddings


def test_a_zero_dimensional_parameter_is_a_vector():
    model = torch.nn.Module()
    model.scale = torch.nn.Parameter(torch.tensor(2.0))  # ScaleNorm's, for one
    model.proj = torch.nn.Linear(3, 3)
    groups = parameter_groups(model)
    assert groups.vectors == [model.scale, model.proj.bias] and groups.matrices == [
        model.proj.weight
    ]


def test_sandwich_adds_a_norm_after_each_branch(registry, tiny):
    norm = {"name": "layernorm", "bias": False}
    pre = tiny_model(registry, tiny, norm=norm).num_parameters()
    sandwich = tiny_model(registry, tiny, norm=norm, norm_placement="sandwich")
    post = tiny_model(registry, tiny, norm=norm, norm_placement="post")
    assert sandwich.num_parameters() - pre == 2 * 2 * 32  # two layers, two gains each
    assert isinstance(post.final_norm, torch.nn.Identity)
    assert not isinstance(sandwich.final_norm, torch.nn.Identity)


@pytest.mark.parametrize(("placement", "bounded"), [("sandwich", True), ("pre", False)])
def test_sandwich_bounds_what_a_branch_writes_into_the_stream(registry, tiny, placement, bounded):
    model = tiny_model(registry, tiny, norm_placement=placement)
    block = model.blocks[0]
    with torch.no_grad():
        block.attn.out.weight.mul_(1000.0)  # a branch gone wild
        block.ffn.down.weight.mul_(1000.0)
        x = torch.randn(2, BLOCK, 32)
        update = block(x, model.positional) - x
    rms = update.square().mean(-1).sqrt().max().item()
    assert (rms <= 2.0 + 1e-4) == bounded  # two unit-RMS norm outputs at most, when sandwiched


class _SpyPlugin:
    def __init__(self) -> None:
        self.built: list[str] = []

    @hookimpl
    def register_ffn(self, register):
        def check(options, ctx):
            if ctx.d_model != 32:
                raise ValueError(f"spy needs d_model 32, got d_model ({ctx.d_model})")

        def factory(options, ctx):
            self.built.append("ffn")
            return torch.nn.Identity()

        register("spy", factory, check=check)


def test_build_model_runs_the_checks_before_building_anything(registry, tiny):
    spy = _SpyPlugin()
    registry.add_plugin(spy, name="spy")
    tiny["model"]["ffn"] = "spy"
    cfg = experiment_from_dict(tiny, registry).model
    build_model(cfg, VOCAB, BLOCK, registry)
    assert spy.built == ["ffn", "ffn"]  # one per layer
    spy.built.clear()
    wider = attrs.evolve(cfg, d_model=64)  # not through the loader: build_model still checks
    with pytest.raises(ConfigError, match=r"^\[model.ffn\]: spy needs d_model 32, got d_model"):
        build_model(wider, VOCAB, BLOCK, registry)
    assert spy.built == []


class _DepthScaled(torch.nn.Module):
    """A feed-forward branch scaled by its depth, as differential attention's lambda_init
    (0.8 - 0.6 exp(-0.3 layer)) or depth-muP's 1 / sqrt(n_layers) need the block's index."""

    def __init__(self, options, ctx):
        super().__init__()
        self.layer, self.n_layers = ctx.layer, ctx.n_layers
        self.scale = 0.8 - 0.6 * math.exp(-0.3 * ctx.layer)

    def forward(self, x):
        return self.scale * x


class _DepthPlugin:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, int]] = []

    @hookimpl
    def register_ffn(self, register):
        register("depth_scaled", _DepthScaled)

    @hookimpl
    def register_positional(self, register):
        def factory(options, ctx):
            self.seen.append(("positional", ctx.layer, ctx.n_layers))
            return Positional()

        register("depth_spy", factory, check=self.check)

    def check(self, options, ctx):
        self.seen.append(("check", ctx.layer, ctx.n_layers))


def test_each_block_is_built_knowing_its_index_and_the_depth(registry, tiny):
    plugin = _DepthPlugin()
    registry.add_plugin(plugin, name="depth")
    model = tiny_model(registry, tiny, n_layers=3, ffn="depth_scaled", positional="depth_spy")
    assert [(b.ffn.layer, b.ffn.n_layers) for b in model.blocks] == [(0, 3), (1, 3), (2, 3)]
    scales = [b.ffn.scale for b in model.blocks]
    assert scales == sorted(scales) and len(set(scales)) == 3  # deeper blocks, larger lambda
    # The positional encoding serves every block, and checks judge the whole model.
    assert ("positional", None, 3) in plugin.seen
    assert all(layer is None for kind, layer, _ in plugin.seen if kind == "check")


@pytest.mark.parametrize("tied", [True, False])
def test_a_padded_vocabulary_never_shows_in_the_logits(registry, tiny, tied):
    """vocab_multiple rounds the embedding's and the head's rows up (50 -> 64); the padded
    rows' logits are cut off, so the model computes what the unpadded one computes and
    the padded rows get no gradient at all."""
    plain = tiny_model(registry, tiny, tie_embeddings=tied).eval()
    padded = tiny_model(registry, tiny, tie_embeddings=tied, vocab_multiple=64).eval()
    assert padded.token_embedding.weight.shape[0] == padded.padded_vocab_size == 64
    assert padded.lm_head.weight.shape[0] == 64 and padded.vocab_size == VOCAB
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    for name in ("token_embedding.weight", "lm_head.weight"):  # real rows, then noise
        state[name] = torch.cat([state[name], torch.randn(64 - VOCAB, state[name].size(1))])
    padded.load_state_dict(state)
    idx = torch.randint(VOCAB, (2, BLOCK))
    assert padded(idx).shape == (2, BLOCK, VOCAB)
    assert torch.equal(padded(idx), plain(idx))
    cache = padded.new_cache()
    assert torch.equal(
        padded.forward_cached(idx, cache), plain.forward_cached(idx, plain.new_cache())
    )
    padded.train()
    torch.nn.functional.cross_entropy(padded(idx).flatten(0, 1), idx.flatten()).backward()
    for name in ("token_embedding", "lm_head"):
        grad = getattr(padded, name).weight.grad
        assert grad[VOCAB:].abs().max() == 0 and grad[:VOCAB].abs().max() > 0, name


def test_vocab_multiple_of_one_changes_nothing(registry, tiny):
    plain = tiny_model(registry, tiny)
    same = tiny_model(registry, tiny, vocab_multiple=1)
    assert plain.padded_vocab_size == VOCAB
    for (name, a), (_, b) in zip(
        plain.state_dict().items(), same.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
