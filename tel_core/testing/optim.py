"""``check_optimizer`` and ``check_schedule``: how parameters move, and how fast.

The loop builds the optimizer once from the model's ``ParameterGroups``, overwrites each
param group's ``"lr"`` every step from the schedule, calls ``step()`` without a closure,
and saves both in checkpoints; a resumed run asks the schedule for step k first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tel_core.model.decoder import parameter_groups
from tel_core.registry.interfaces import ScheduleContext
from tel_core.registry.registry import Component, Registry
from tel_core.testing.subject import check_options, fail, subject, wrong_type
from tel_core.testing.tensors import randn, same_state

STEPS = 20  # optimizer steps on the toy problem


class _Toy(nn.Module):
    """Every sort of parameter the core sorts: an embedding, matrices, biases, a norm gain."""

    def __init__(self, embedding: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8) if embedding else None
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) if self.embed is not None else x
        return self.head(self.norm(torch.tanh(self.proj(h)))).squeeze(-1)


def _problem(embedding: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(16, (64,), generator=g) if embedding else randn(64, 8, seed=3)
    return x, randn(64, seed=4)


def check_optimizer(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    lr: float | None = None,
) -> None:
    """Check an optimizer against the ``register_optimizers`` contract.

    Builds it with ``factory(options, ParameterGroups, lr)`` for a toy model (``lr``
    defaults to the ``lr`` option, else 1e-2) and checks: a ``torch.optim.Optimizer``
    holding every parameter exactly once; every param group has an ``"lr"``, and the
    step reads it (lr 0 moves nothing); ``step()`` works without a closure; a few steps
    lower a simple regression loss; ``state_dict``/``load_state_dict`` resumes to the
    same next step; two runs under one seed agree; a model without embeddings works.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("optimizer", component, options, registry)
    check_options(s)
    if lr is None:
        option = getattr(s.options, "lr", None)
        lr = option if isinstance(option, float) else 1e-2

    def make(embedding: bool = True) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = _Toy(embedding)
        optimizer = s.build_a(
            torch.optim.Optimizer, "a torch.optim.Optimizer", parameter_groups(model), lr
        )
        return model, optimizer

    with s.check("builds a torch.optim.Optimizer"):
        model, optimizer = make()
    with s.check("holds every parameter exactly once"):
        _holds_every_parameter(model, optimizer)
    with s.check("every param group has an lr"):
        if any("lr" not in group for group in optimizer.param_groups):
            fail("a param group has no 'lr'; the loop sets group['lr'] every step")
    with s.check("step() without a closure"):
        _loss(model).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with s.check("reads the lr of its param groups"):
        model, optimizer = make()
        before = copy.deepcopy(model)
        for _ in range(2):
            _step(model, optimizer, lr=0.0)
        same_state(model, before, "with every group's lr at 0, a step still moved parameters")
    with s.check("lowers a simple loss"):
        model, optimizer = make()
        first = _loss(model).item()
        for _ in range(STEPS):
            _step(model, optimizer, lr)
        if not (last := _loss(model).item()) < first:
            fail(f"{STEPS} steps at lr {lr:g} took a toy loss from {first:.4g} to {last:.4g}")
    with s.check("resumes from its state_dict"):
        _resumes(make)
    with s.check("deterministic"):
        (a, opt_a), (b, opt_b) = make(), make()
        for _ in range(3):
            _step(a, opt_a, lr)
            _step(b, opt_b, lr)
        same_state(a, b, "two runs from one seed differ")
    with s.check("a model without embeddings"):
        model, optimizer = make(embedding=False)
        _step(model, optimizer, lr)


def _loss(model: nn.Module) -> torch.Tensor:
    x, y = _problem(getattr(model, "embed", None) is not None)
    return F.mse_loss(model(x), y)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, lr: float) -> None:
    """One step the way the loop takes it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    _loss(model).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _holds_every_parameter(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    held = [p for group in optimizer.param_groups for p in group["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for p_id, n in names.items() if p_id not in {id(p) for p in held}]
    if missing:
        fail(f"parameters missing from its param groups: {', '.join(missing)}")
    if len(held) != len({id(p) for p in held}):
        fail("a parameter sits in more than one param group (or twice in one)")
    if foreign := [p for p in held if id(p) not in names]:
        fail(f"{len(foreign)} tensors in its param groups are not the model's parameters")


def _resumes(make: Callable[[], tuple[nn.Module, torch.optim.Optimizer]]) -> None:
    model, optimizer = make()
    for _ in range(3):
        _step(model, optimizer, 1e-2)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), optimizer.state_dict()
    saved_optimizer = copy.deepcopy(saved_optimizer)
    _step(model, optimizer, 1e-2)
    resumed, fresh = make()
    resumed.load_state_dict(saved_model)
    fresh.load_state_dict(saved_optimizer)
    _step(resumed, fresh, 1e-2)
    same_state(model, resumed, "a step after load_state_dict differs from the uninterrupted one")


def check_schedule(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    ctx: ScheduleContext | None = None,
) -> None:
    """Check a learning-rate schedule against the ``register_schedules`` contract.

    Builds it with ``factory(options, ctx)`` (default ``ScheduleContext(base_lr=1e-3,
    max_steps=200)``) and checks: it is callable; every step in ``[0, max_steps)`` gets a
    finite, non-negative number, and some step a positive one; the value of a step does
    not depend on which steps were asked before (a resumed run starts at step k), or on
    the instance; a one-step run works.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("schedule", component, options, registry)
    check_options(s)
    ctx = ctx or ScheduleContext(base_lr=1e-3, max_steps=200)

    def build(context: ScheduleContext = ctx) -> Callable[[int], float]:
        lr_at = s.build(context)
        if not callable(lr_at):
            wrong_type(lr_at, "a callable: step -> learning rate")
        return lr_at

    with s.check("builds a callable"):
        lr_at = build()
    with s.check("a learning rate for every step"):
        values = [_value(lr_at, step) for step in range(ctx.max_steps)]
        if not any(v > 0 for v in values):
            fail(f"the learning rate is 0 at every one of {ctx.max_steps} steps")
    with s.check("steps in any order"):
        fresh = build()
        backwards = [_value(fresh, step) for step in reversed(range(ctx.max_steps))]
        forwards = backwards[::-1]
        if forwards != values:
            step = next(i for i in range(ctx.max_steps) if forwards[i] != values[i])
            fail(f"step {step} gets another lr when steps are asked in reverse: keep no state")
    with s.check("a one-step run"):
        _value(build(ScheduleContext(ctx.base_lr, max_steps=1)), 0)


def _value(lr_at: Callable[[int], float], step: int) -> float:
    value = lr_at(step)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"step {step} gave {value!r}; return a float")
    if not math.isfinite(value) or value < 0:
        fail(f"step {step} gave {value!r}; a learning rate is finite and not negative")
    return float(value)
