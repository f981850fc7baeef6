"""alibi: the positional contract; the paper's slopes, a bias by distance only."""

from __future__ import annotations

import pytest
import torch

from tel_core.testing import check_positional, model_context
from tel_plugins.positional.alibi import ALiBi, ALiBiOptions, alibi_slopes


@pytest.mark.parametrize("ctx", [None, model_context(n_heads=3, d_model=24)])
def test_conforms(registry, ctx):
    # Paired with every registered attention; linear attention refuses it in one line.
    check_positional("alibi", registry=registry, ctx=ctx)


def test_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # not a power of two: the 4-head slopes, then every other 8-head slope
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


def test_biases_scores_by_distance_only():
    alibi = ALiBi(ALiBiOptions(), model_context(n_heads=2, n_layers=1, bias=False))
    bias = alibi.score_bias(5)
    assert bias.shape == (2, 5, 5)
    slopes = alibi_slopes(2)
    for h in range(2):
        for i in range(5):
            for j in range(i + 1):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * (i - j))
    assert alibi.embed(torch.ones(1, 5, 32)).equal(torch.ones(1, 5, 32))
    assert not list(alibi.parameters())
