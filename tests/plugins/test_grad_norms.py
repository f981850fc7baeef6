"""grad_norms: per-part gradient norms, before clipping, and update-to-weight ratios."""

from __future__ import annotations

import math

import pytest
import torch

from tel_core.model.decoder import build_model
from tel_core.probes.contract import ProbeContext, Update
from tel_core.testing import check_probe
from tel_core.train.distributed import Distributed
from tel_core.train.experiment import experiment_from_dict
from tel_plugins.probes.grad_norms import GradNorms, GradNormsOptions, group_of


@pytest.mark.parametrize("options", [None, {"histograms": True, "update_ratio": False, "bins": 8}])
def test_conforms(registry, options):
    check_probe("grad_norms", options, registry=registry)


def test_untied_head_and_sandwich_norms(registry):
    model = {"tie_embeddings": False, "norm_placement": "sandwich", "positional": "rope"}
    check_probe("grad_norms", registry=registry, model=model)


def test_parameters_are_grouped_by_part_and_layer():
    assert group_of("blocks.3.attn.qkv.weight") == ("blocks.3.attn", "blocks.3")
    assert group_of("blocks.0.norm_ffn.weight") == ("blocks.0.norm_ffn", "blocks.0")
    assert group_of("token_embedding.weight") == ("token_embedding", "token_embedding")
    assert group_of("positional.table.weight") == ("positional", "positional")


def tiny_model(registry, tiny, **model):
    tiny["model"].update(model)
    torch.manual_seed(0)
    experiment = experiment_from_dict(tiny, registry)
    return build_model(experiment.model, 11, tiny["data"]["block_size"], registry)


def norm_of(model, prefix):
    tensors = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
    return torch.cat([t.flatten() for t in tensors]).norm().item()


def test_norms_and_ratios_are_those_of_each_group(registry, tiny):
    model = tiny_model(registry, tiny, tie_embeddings=False)
    ctx = ProbeContext(model, 11, 16, 10, torch.device("cpu"), Distributed())
    probe = GradNorms(GradNormsOptions(), ctx)
    x = torch.randint(11, (3, 16), generator=torch.Generator().manual_seed(0))
    model(x).square().mean().backward()
    norms = probe.after_backward(1).scalars
    expected_groups = {
        "token_embedding",
        "positional",
        "final_norm",
        "lm_head",
        *(
            f"blocks.{i}{part}"
            for i in range(2)
            for part in ("", ".attn", ".ffn", ".norm_attn", ".norm_ffn")
        ),
    }
    assert set(norms) == {f"grad_norm/{g}" for g in expected_groups}
    for group in expected_groups:
        assert norms[f"grad_norm/{group}"] == pytest.approx(norm_of(model, group + "."), rel=1e-5)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.01 * p.grad.sign())
    ratios = probe.after_update(Update(1, 1.0, 1.0, 0.01, False, True, False)).scalars
    ffn = [n for n in before if n.startswith("blocks.1.ffn.")]
    params = dict(model.named_parameters())
    moved = torch.cat([(params[n] - before[n]).flatten() for n in ffn]).norm()
    size = torch.cat([before[n].flatten() for n in ffn]).norm()
    assert ratios["update_ratio/blocks.1.ffn"] == pytest.approx((moved / size).item(), rel=1e-5)
    assert set(ratios) == {k.replace("grad_norm/", "update_ratio/") for k in norms}


def test_in_a_run_the_norms_are_taken_before_clipping(tel_train):
    run = tel_train(
        steps=4,
        config={"train": {"grad_clip": 1e-3}},
        probes=[{"name": "grad_norms", "every": 2, "update_ratio": False}],
    )
    for record in (r for r in run.records if "grad_norm/token_embedding" in r):
        parts = [v for k, v in record.items() if k.startswith("grad_norm/") and not _is_block(k)]
        train = next(r for r in run.records if r["step"] == record["step"] and "train/loss" in r)
        assert train["train/clipped"] == 1
        total = math.sqrt(sum(v * v for v in parts))
        assert total == pytest.approx(train["train/grad_norm"], rel=1e-5)
    assert [r["step"] for r in run.records if "grad_norm/token_embedding" in r] == [2, 4]


def _is_block(key: str) -> bool:
    return key.removeprefix("grad_norm/").count(".") == 1  # blocks.N: the sum of its parts
