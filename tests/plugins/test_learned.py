"""learned: the positional contract; one trained vector per position, added to the tokens."""

import torch

from tel_core.testing import check_positional, model_context
from tel_plugins.positional.learned import LearnedOptions, LearnedPositions


def test_conforms(registry):
    check_positional("learned", registry=registry)


def test_adds_one_vector_per_position_up_to_block_size():
    ctx = model_context()
    positions = LearnedPositions(LearnedOptions(), ctx)
    assert positions.table.weight.shape == (ctx.block_size, ctx.d_model)
    x = torch.zeros(1, 5, ctx.d_model)
    assert torch.equal(positions.embed(x)[0], positions.table.weight[:5])
