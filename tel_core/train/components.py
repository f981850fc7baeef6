"""Building a run's components from the registry, in the order the loop needs them.

Data first (the tokenizer decides the vocabulary), then the model (on its device, wrapped
for data parallel and compiled if asked), the optimizer and schedule, the probes and, on
rank 0, the loggers. Everything is built before the run directory is touched, so an
experiment that fails to start costs an earlier run nothing (``tel_core.train.loop``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import attrs
import torch
from torch import nn

from tel_core.config.schema import Experiment
from tel_core.config.serialise import to_dict
from tel_core.data.batching import SeededSampler, make_sampler, validation_rows
from tel_core.data.token_cache import TokenSplits, check_length, prepare_tokens
from tel_core.errors import ConfigError, TelError, one_line
from tel_core.model.decoder import LanguageModel, build_model, parameter_groups
from tel_core.probes.contract import ProbeContext
from tel_core.probes.runner import Probes, build_probes
from tel_core.registry.interfaces import (
    DataContext,
    Logger,
    LoggerContext,
    Optimum,
    OptimumContext,
    ScheduleContext,
    Tokenizer,
)
from tel_core.registry.registry import Registry
from tel_core.train.device import compile_model
from tel_core.train.distributed import Distributed
from tel_core.train.loss import ModelLoss
from tel_core.train.precision import Precision, native_bf16
from tel_core.train.scoring import target_bytes

Info = Callable[[str], None]


def build_precision(experiment: Experiment, device: torch.device, info: Info) -> Precision:
    train = experiment.train
    precision = Precision(
        train.precision, device, experiment.model.d_model, train.compile, train.tf32
    )
    if precision.name == "bf16" and not native_bf16(device):
        info(
            f"{experiment.name}: this {device.type} has no bf16 arithmetic, so bf16 "
            f"is emulated and usually much slower than fp32"
        )
    return precision


@attrs.frozen
class Data:
    """The tokens of both splits, how the loop draws from them, and what it scores on."""

    tokenizer: Tokenizer
    splits: TokenSplits
    sampler: SeededSampler  # the training rows, a step's batch at a time
    val_batches: list[tuple[torch.Tensor, torch.Tensor]]  # fixed: the same at every eval
    val_bytes: int  # UTF-8 bytes behind the real validation targets (bits per byte)
    optimum: Optimum | None  # what a synthetic task knows of the best reachable loss
    prompt_ids: list[int]  # the end-of-run sample's prompt


def build_data(experiment: Experiment, registry: Registry, world: Distributed, info: Info) -> Data:
    cfg = experiment
    dataset = registry.build(
        "dataset", cfg.data.dataset, DataContext(cfg.data.val_fraction, cfg.seed)
    )
    tokenizer = registry.build("tokenizer", cfg.data.tokenizer)
    source = f"{cfg.data.dataset.name} with {cfg.data.tokenizer.name}"
    # Under torchrun one process per machine tokenizes; the others read its cache.
    with world.local_main_first():
        splits = prepare_tokens(
            cfg.data,
            dataset,
            tokenizer,
            registry,
            progress=world.local_rank == 0,
            announce=lambda: info(f"{cfg.name}: tokenizing {source}"),
        )
    if splits.from_cache:
        info(f"{cfg.name}: the tokens of {source} come from the cache {splits.cache_dir}")
    for split, tokens in (("train", splits.train), ("val", splits.val)):
        check_length(tokens, cfg.data.block_size, split, cfg.data.dataset.name)
    mode, block = cfg.data.batching, cfg.data.block_size
    sampler = make_sampler(mode, splits.train, splits.train_offsets, block, cfg.seed, "train")
    val_batches = validation_rows(cfg, splits.val, splits.val_offsets)
    # A synthetic task may know the best reachable loss: evaluations report the excess.
    optimum = dataset.optimum(OptimumContext(tokenizer, block, mode))
    # Encoded now, so that a prompt the tokenizer refuses fails before training, not after.
    try:
        prompt_ids = list(tokenizer.encode(cfg.sample.prompt)) or [0]
    except (TelError, ValueError, KeyError) as exc:
        why = str(exc) if isinstance(exc, TelError) else one_line(exc)
        raise ConfigError(f"[sample] prompt = {cfg.sample.prompt!r}: {why}") from exc
    # Bits per byte needs the bytes behind the (real) validation targets: count them once.
    val_bytes = target_bytes(tokenizer, val_batches)
    return Data(tokenizer, splits, sampler, val_batches, val_bytes, optimum, prompt_ids)


def build_training_model(
    experiment: Experiment,
    vocab_size: int,
    device: torch.device,
    precision: Precision,
    world: Distributed,
    registry: Registry,
    info: Info,
) -> tuple[LanguageModel, nn.Module, nn.Module]:
    """(the plain model, the DDP-wrapped one, what the training step calls).

    The plain module serves evaluation, sampling and checkpoints; the DDP module averages
    gradients across processes (it is the model in a world of one); the training step
    calls ``ModelLoss`` over the DDP module (forward under autocast, then the loss),
    compiled if ``[train] compile``.
    """
    cfg, train = experiment, experiment.train
    model = build_model(cfg.model, vocab_size, cfg.data.block_size, registry).to(device)
    model.activation_checkpointing = train.activation_checkpointing
    if world.rank > 0:
        # Every process built the same weights from the same seed (and DDP starts
        # them all from rank 0's); from here on, each draws its own dropout masks.
        torch.manual_seed(cfg.seed + world.rank)
    ddp = world.wrap(model, device)
    step = ModelLoss(ddp, device.type, precision.dtype)
    train_model = compile_model(step, device, info) if train.compile else step
    return model, ddp, train_model


def build_optimizer(
    experiment: Experiment, model: nn.Module, registry: Registry, info: Info
) -> tuple[torch.optim.Optimizer, Callable[[int], float], float]:
    """(the optimizer, the schedule's ``lr_at(step)``, the batch-size scaling of lr)."""
    cfg, train = experiment, experiment.train
    base_lr = getattr(cfg.optimizer.options, "lr", None)
    if not isinstance(base_lr, float):
        raise ConfigError(f"optimizer {cfg.optimizer.name!r} has no float option 'lr'")
    lr_scale = train.lr_scale
    if lr_scale != 1.0:
        info(
            f"{cfg.name}: learning rates x {lr_scale:.4g} ({train.lr_scaling} scaling, "
            f"batch {train.batch_size} against reference {train.reference_batch_size})"
        )
    peak = base_lr * lr_scale
    optimizer = registry.build("optimizer", cfg.optimizer, parameter_groups(model), peak)
    # An optimizer may give groups their own learning rates (say, embeddings x 10):
    # the schedule then moves every group's rate, keeping these ratios.
    for group in optimizer.param_groups:
        group.setdefault("lr_ratio", group["lr"] / peak)
    lr_at = registry.build("schedule", cfg.schedule, ScheduleContext(base_lr, train.max_steps))
    return optimizer, lr_at, lr_scale


def build_run_probes(
    experiment: Experiment,
    registry: Registry,
    ctx: ProbeContext,
    *,
    val_batch: tuple[torch.Tensor, torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    log: Callable[[int, dict[str, float]], None],
    loggers: Sequence[Logger],
    run_dir: Path,
) -> Probes:
    """The experiment's probes, built on every process (a probe may need all of them)."""
    return Probes(
        build_probes(experiment, registry, ctx),
        ctx,
        val_batch=val_batch,
        autocast=autocast,
        log=log,
        loggers=loggers,
        run_dir=run_dir,
        name=experiment.name,
    )


def build_loggers(
    experiment: Experiment, registry: Registry, run_dir: Path, start_step: int
) -> Iterator[Logger]:
    """The experiment's loggers (rank 0 alone logs), one at a time: when one fails to
    start, those built before it have been handed out, to be closed."""
    exp = experiment
    ctx = LoggerContext(run_dir, exp.name, exp.train.max_steps, start_step, to_dict(exp))
    for selection in exp.loggers:
        yield registry.build("logger", selection, ctx)
