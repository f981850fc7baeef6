"""CUDA autocast's dtype rules on the CPU: every attention x positional x {bf16, fp16} trains,
generates through its KV cache and records its attention as it would on a GPU.

CPU autocast keeps ``exp``, ``sum``, ``softmax``, ``layer_norm``... in the low precision;
CUDA's runs them in float32. ``tel_core.testing.autocast.cuda_autocast`` applies CUDA's
lists on the CPU, so the bugs a GPU would show first show here (a hand-written backward
handed float32 probabilities and a bfloat16 gradient; running sums cast back to float16).
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from tel_core.model.nn import record_attention
from tel_core.testing import check_attention, model_context
from tel_core.testing.autocast import cuda_autocast
from tel_plugins.attention.linear import LinearAttention, LinearOptions

from .conftest import builtin_components
from .test_kv_cache import VOCAB, cached_logits, make_model
from .trained import one_thread  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("one_thread")

ATTENTIONS = [name for _, name in builtin_components(("attention",))]
POSITIONALS = [name for _, name in builtin_components(("positional",))]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: How far cached logits may stray from recomputed ones, relative to the logits' scale.
CACHE_TOLERANCE = {"bf16": 3e-2, "fp16": 5e-3}


def test_the_emulation_applies_cudas_float32_list_and_keeps_matmuls_low():
    x = torch.randn(4, 8)
    for dtype in DTYPES.values():
        low = x.to(dtype)
        with cuda_autocast(dtype):
            assert torch.exp(low).dtype == torch.float32
            assert low.sum(dim=-1).dtype == torch.float32
            assert torch.softmax(low, dim=-1).dtype == torch.float32
            assert torch.nn.functional.layer_norm(low, (8,)).dtype == torch.float32
            assert (low**2).dtype == torch.float32
            assert (x @ x.T).dtype == dtype  # the matmul family: low, as on CUDA
            assert (low + low).dtype == dtype  # everything else: as it comes
        with torch.autocast("cpu", dtype=dtype):  # plain CPU autocast, for contrast
            assert torch.exp(low).dtype == dtype


@pytest.mark.parametrize("precision", sorted(DTYPES))
@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_training_generation_and_recording_under_cuda_rules(
    registry, attention, positional, precision
):
    dtype = DTYPES[precision]
    try:
        model = make_model(registry, attention, positional)
        idx = torch.randint(VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
        model(idx)
    except Exception as exc:  # a combination the plugins refuse (linear + alibi)
        pytest.skip(f"refused: {exc}")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(2):  # two training steps: forward under the rules, backward after
        with cuda_autocast(dtype):
            logits = model(idx[:, :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, VOCAB), idx[:, 1:].reshape(-1)
            )
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.dtype == p.dtype, name
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(map(math.isfinite, losses))

    model.eval()
    with torch.no_grad(), cuda_autocast(dtype):
        whole = model(idx).float()
        cached = cached_logits(model, idx, [5, 1, 1, 5]).float()
        with record_attention(model) as probs:
            model(idx)
    error = (cached - whole).abs().max().item() / whole.abs().max().item()
    assert error <= CACHE_TOLERANCE[precision], f"KV cache differs by {error:.2g}"
    for layer, recorded in probs.items():
        p = recorded[0].float()
        assert torch.isfinite(p).all(), layer
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=2e-2), layer


#: The output's own rounding in each precision, and nothing more.
ROUNDING = {"bf16": 5e-3, "fp16": 1e-3}


@pytest.mark.parametrize("precision", sorted(DTYPES))
def test_linear_attention_keeps_a_long_block_in_float32(precision):
    """fp16 used to zero the output from position ~650 of a 1024 block (the running
    denominator passed 65,504); bf16 lost 1 % (the sums cast back to bf16 by the matmuls).
    Now both equal float32 on the same inputs, to their own rounding."""
    torch.manual_seed(0)
    ctx = attrs.evolve(model_context(), d_model=256, n_heads=4, block_size=1024)
    module = LinearAttention(LinearOptions(), ctx).eval()
    dtype = DTYPES[precision]
    q, k, v = (2 * torch.randn(1, 4, 1024, 64).to(dtype) for _ in range(3))
    with torch.no_grad():
        reference = module.attend(q.float(), k.float(), v.float(), None)
        with cuda_autocast(dtype):
            low = module.attend(q, k, v, None)
    assert low.dtype == dtype
    error = (low.float() - reference).abs().amax(-1) / reference.abs().amax(-1)
    assert error.max().item() < ROUNDING[precision], f"worst position {error.argmax().item()}"


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_the_kit_checks_attention_under_cuda_rules(attention):
    # check_attention runs its "CUDA autocast rules" check for every variant (third-party
    # ones too); here only the built-ins', which the tests above look at more closely.
    check_attention(attention, positionals=[])
