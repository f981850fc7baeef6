"""activations: residual-stream statistics per block, checked against numpy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from tel_core.data.batching import IGNORE_INDEX
from tel_core.model.decoder import build_model
from tel_core.probes.contract import EvalBatch, ProbeContext
from tel_core.testing import check_probe
from tel_core.train.distributed import Distributed
from tel_core.train.experiment import experiment_from_dict
from tel_plugins.probes.activations import Activations, ActivationsOptions, residual_stats


@pytest.mark.parametrize("options", [None, {"rows": 1, "every": 3}])
def test_conforms(registry, options):
    check_probe("activations", options, registry=registry)


def test_post_ln(registry):
    check_probe("activations", registry=registry, model={"norm_placement": "post"})


def test_statistics_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=5, size=(40, 24)) * 3 + 0.5  # heavy tails: kurtosis well above 3
    stats = residual_stats(torch.from_numpy(x).float())
    x = x.astype(np.float32).astype(np.float64)
    assert stats["rms"] == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-6)
    assert stats["mean"] == pytest.approx(np.mean(x), rel=1e-6)
    assert stats["std"] == pytest.approx(np.std(x), rel=1e-6)
    assert stats["max_abs"] == pytest.approx(np.abs(x).max(), rel=1e-6)
    kurtosis = scipy.stats.kurtosis(x, axis=-1, fisher=False, bias=True).mean()
    assert stats["kurtosis"] == pytest.approx(kurtosis, rel=1e-6)
    assert residual_stats(torch.randn(4000, 64))["kurtosis"] == pytest.approx(3.0, abs=0.1)


def test_each_block_output_is_measured_over_real_positions_only(registry, tiny):
    torch.manual_seed(0)
    model = build_model(experiment_from_dict(tiny, registry).model, 11, 16, registry).eval()
    probe = Activations(ActivationsOptions(), ProbeContext(model, 11, 16, 4, "cpu", Distributed()))
    inputs = torch.randint(11, (3, 16), generator=torch.Generator().manual_seed(1))
    targets = inputs.clone()
    targets[2, 10:] = IGNORE_INDEX  # the last row is padded after 10 tokens

    with torch.no_grad():
        report = probe.evaluate(EvalBatch(5, model, inputs, targets)).scalars
        x = model.positional.embed(model.token_embedding(inputs))
        real = targets != IGNORE_INDEX
        for i, block in enumerate(model.blocks):
            x = block(x, model.positional)
            expected = residual_stats(x[real])
            assert {k: report[f"act/{k}/layer{i}"] for k in expected} == pytest.approx(expected)
        other = inputs.clone()
        other[2, 10:] = 0  # what padding holds must not matter
        again = probe.evaluate(EvalBatch(5, model, other, targets)).scalars
    assert again == pytest.approx(report)
    assert len(report) == 5 * len(model.blocks)
    assert not any(block._forward_hooks for block in model.blocks)
