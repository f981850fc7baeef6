"""mlp: the ffn contract; expansion and activation."""

import pytest
from torch import nn

from tel_core.model.nn import is_residual_projection
from tel_core.testing import check_ffn, model_context
from tel_plugins.ffn.mlp import MLP, MLPOptions


@pytest.mark.parametrize("options", [None, {"expansion": 2, "activation": "silu"}])
def test_conforms(registry, options):
    check_ffn("mlp", options, registry=registry)


def test_expansion_sets_the_hidden_width_and_the_down_projection_is_residual():
    ctx = model_context()
    mlp = MLP(MLPOptions(expansion=3, activation="relu"), ctx)
    assert mlp.up.out_features == 3 * ctx.d_model and isinstance(mlp.act, nn.ReLU)
    assert is_residual_projection(mlp.down) and not is_residual_projection(mlp.up)
