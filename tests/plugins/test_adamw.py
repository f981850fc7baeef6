import torch
from torch import nn

from tel_core.model import parameter_groups
from tel_plugins.optimizers.adamw import AdamWOptions, adamw
from tel_plugins.optimizers.sgd import SGDOptions, sgd


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


def decays(optimizer):
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


def test_adamw_decays_matrices_only_by_default():
    model = Toy()
    opt = adamw(AdamWOptions(weight_decay=0.1), parameter_groups(model), lr=1e-3)
    d = decays(opt)
    assert d[id(model.linear.weight)] == 0.1
    assert d[id(model.embed.weight)] == 0.0
    assert d[id(model.linear.bias)] == d[id(model.norm.weight)] == 0.0
    assert len(d) == len(list(model.parameters()))


def test_adamw_can_decay_embeddings():
    model = Toy()
    opt = adamw(AdamWOptions(decay_embeddings=True), parameter_groups(model), lr=1e-3)
    assert decays(opt)[id(model.embed.weight)] == 0.1


def test_sgd_steps():
    model = Toy()
    opt = sgd(SGDOptions(), parameter_groups(model), lr=0.1)
    before = model.linear.weight.detach().clone()
    model.linear(torch.ones(1, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.linear.weight)
