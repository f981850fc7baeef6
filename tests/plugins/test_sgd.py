"""sgd: the optimizer contract, momentum and Nesterov."""

import pytest
import torch
from torch import nn

from tel_core.errors import ConfigError
from tel_core.model.decoder import parameter_groups
from tel_core.testing import check_optimizer
from tel_core.train.experiment import experiment_from_dict
from tel_plugins.optimizers.sgd import SGDOptions, sgd


@pytest.mark.parametrize(
    "options", [None, {"nesterov": True}, {"momentum": 0.0, "weight_decay": 0.01}]
)
def test_conforms(registry, options):
    check_optimizer("sgd", options, registry=registry)


def test_steps():
    model = nn.Linear(4, 4)
    opt = sgd(SGDOptions(), parameter_groups(model), lr=0.1)
    before = model.weight.detach().clone()
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_nesterov_without_momentum_is_a_config_error_not_a_torch_traceback(registry):
    # The kit found this: torch's ValueError used to escape from the middle of `tel run`.
    with pytest.raises(ConfigError, match="nesterov = true needs momentum > 0"):
        experiment_from_dict(
            {"name": "x", "optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.0}},
            registry,
        )
