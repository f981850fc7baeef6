"""The training loop every experiment shares.

One optimizer step sees ``batch_size`` sequences, split into ``batch_size /
micro_batch_size`` micro-batches whose gradients accumulate. The loss of a step is the
sum of per-token losses divided by the number of target tokens in the whole step, so
accumulating micro-batches gives exactly the gradient of one big batch.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from tel_core import ui
from tel_core.checkpoint import save_checkpoint
from tel_core.config import Experiment
from tel_core.config_loader import dump_toml, to_dict
from tel_core.data import WindowSampler, check_length, eval_batches, prepare_tokens
from tel_core.errors import ConfigError, TelError
from tel_core.generate import generate
from tel_core.interfaces import DataContext, LoggerContext, ScheduleContext
from tel_core.model import build_model, parameter_groups
from tel_core.registry import Registry, default_registry
from tel_core.rundir import (
    MetricsFile,
    build_manifest,
    prepare_run_dir,
    write_config,
    write_manifest,
)


@attrs.frozen
class RunResult:
    run_dir: Path
    steps: int
    final_val_loss: float
    best_val_loss: float
    sample: str


def resolve_device(name: str) -> torch.device:
    """ "auto" is CUDA when there is a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"[train] device: unknown device {name!r}; try auto, cpu, cuda, cuda:0"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"[train] device = {name!r}, but torch sees no CUDA device here")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies (nats) over every target token, in float32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")


class Trainer:
    """Builds an experiment's components from the registry and trains them."""

    def __init__(self, experiment: Experiment, run_dir: Path, registry: Registry) -> None:
        self.exp = experiment
        self.run_dir = run_dir
        self.registry = registry
        cfg, train = experiment, experiment.train
        seed_everything(cfg.seed)
        self.device = resolve_device(train.device)

        ui.info(f"{cfg.name}: tokenizing {cfg.data.dataset.name} with {cfg.data.tokenizer.name}")
        dataset = registry.build(
            "dataset", cfg.data.dataset, DataContext(cfg.data.val_fraction, cfg.seed)
        )
        self.tokenizer = registry.build("tokenizer", cfg.data.tokenizer)
        splits = prepare_tokens(cfg.data, dataset, self.tokenizer)
        for split, tokens in (("train", splits.train), ("val", splits.val)):
            check_length(tokens, cfg.data.block_size, split, cfg.data.dataset.name)
        (run_dir / "tokenizer.json").write_text(
            json.dumps({"name": cfg.data.tokenizer.name, "state": self.tokenizer.state_dict()})
        )

        self.model = build_model(
            cfg.model, self.tokenizer.vocab_size, cfg.data.block_size, registry
        ).to(self.device)
        base_lr = getattr(cfg.optimizer.options, "lr", None)
        if not isinstance(base_lr, float):
            raise ConfigError(f"optimizer {cfg.optimizer.name!r} has no float option 'lr'")
        self.optimizer = registry.build(
            "optimizer", cfg.optimizer, parameter_groups(self.model), base_lr
        )
        self.lr_at = registry.build(
            "schedule", cfg.schedule, ScheduleContext(base_lr, train.max_steps)
        )

        self.sampler = WindowSampler(splits.train, cfg.data.block_size, seed=cfg.seed)
        self.val_batches = eval_batches(
            splits.val,
            cfg.data.block_size,
            train.micro_size,
            train.eval_batches * train.accumulation_steps,
        )
        # Bits per byte needs the bytes behind the validation targets: decode them once.
        self.val_bytes = sum(
            self.tokenizer.count_bytes(row.tolist())
            for _, targets in self.val_batches
            for row in targets
        )
        self.tokens_per_step = train.batch_size * cfg.data.block_size
        self.n_params = self.model.num_parameters()
        self.flops_per_token = self.model.flops_per_token()

        write_config(run_dir, experiment)
        write_manifest(
            run_dir,
            build_manifest(
                experiment,
                registry,
                device=str(self.device),
                device_name=torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else None,
                torch_threads=torch.get_num_threads(),
                parameters=self.n_params,
                flops_per_token=self.flops_per_token,
                vocab_size=self.tokenizer.vocab_size,
                tokens={"train": len(splits.train), "val": len(splits.val)},
                token_cache=str(splits.cache_dir) if splits.cache_dir else None,
            ),
        )
        ui.info(
            f"{cfg.name}: {self.n_params:,} parameters, vocab {self.tokenizer.vocab_size}, "
            f"{len(splits.train):,} train / {len(splits.val):,} val tokens, "
            f"{self.tokens_per_step:,} tokens per step, on {self.device}"
        )
        self.metrics = MetricsFile(run_dir / "metrics.jsonl")
        logger_ctx = LoggerContext(run_dir, cfg.name, train.max_steps, 0, to_dict(experiment))
        self.loggers = [registry.build("logger", sel, logger_ctx) for sel in cfg.loggers]
        self.best_val_loss = math.inf

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.write(step, metrics)
        for logger in self.loggers:
            logger.log(step, metrics)

    def train_step(self, lr: float) -> tuple[float, float]:
        """One optimizer step; returns (loss, gradient norm before clipping)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = torch.zeros((), device=self.device)
        # Draw the whole step's batch at once: the data a step sees must not depend on
        # how it is split into micro-batches.
        inputs, targets = self.sampler.sample(self.exp.train.batch_size)
        micro = self.exp.train.micro_size
        for x, y in zip(inputs.split(micro), targets.split(micro), strict=True):
            x, y = x.to(self.device), y.to(self.device)
            loss_sum = token_loss_sum(self.model(x), y)
            (loss_sum / self.tokens_per_step).backward()
            total += loss_sum.detach()
        clip = self.exp.train.grad_clip or math.inf  # inf: measure the norm, change nothing
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return (total / self.tokens_per_step).item(), grad_norm.item()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        total, count = 0.0, 0
        for x, y in self.val_batches:
            total += token_loss_sum(self.model(x.to(self.device)), y.to(self.device)).item()
            count += y.numel()
        self.model.train()
        loss = total / count
        return {
            "val/loss": loss,
            "val/ppl": math.exp(min(loss, 50.0)),
            "val/bits_per_token": loss / math.log(2),
            "val/bits_per_byte": total / math.log(2) / max(1, self.val_bytes),
        }

    def save(self, name: str, step: int) -> None:
        save_checkpoint(
            self.run_dir / "checkpoints" / f"{name}.pt",
            {
                "step": step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "best_val_loss": self.best_val_loss,
                "sampler": self.sampler.state_dict(),
                "config": dump_toml(self.exp),
            },
        )

    def sample(self, step: int) -> str:
        cfg = self.exp.sample
        if cfg.max_new_tokens == 0:
            return ""
        prompt_ids = list(self.tokenizer.encode(cfg.prompt)) or [0]
        prompt = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.exp.seed)
        ids = generate(
            self.model, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, generator
        )
        text = self.tokenizer.decode(ids[0].tolist())
        with open(self.run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(
                f"--- step {step}, prompt {cfg.prompt!r}, temperature {cfg.temperature}, "
                f"top_k {cfg.top_k}\n{text}\n"
            )
        for logger in self.loggers:
            logger.log_text(step, "sample", text)
        return text

    def fit(self) -> RunResult:
        train = self.exp.train
        started = time.perf_counter()
        interval_time, interval_tokens, tokens = 0.0, 0, 0
        val = {"val/loss": math.nan}
        for step in range(1, train.max_steps + 1):
            t0 = time.perf_counter()
            lr = self.lr_at(step - 1)
            loss, grad_norm = self.train_step(lr)
            interval_time += time.perf_counter() - t0
            interval_tokens += self.tokens_per_step
            tokens += self.tokens_per_step
            if not math.isfinite(loss):
                raise TelError(
                    f"the loss became {loss} at step {step}; lower optimizer.lr or "
                    f"set train.grad_clip (the last good checkpoint is kept)"
                )
            if step % train.log_every == 0 or step == train.max_steps:
                tokens_per_s = interval_tokens / interval_time
                self.log(
                    step,
                    {
                        "train/loss": loss,
                        "train/lr": lr,
                        "train/grad_norm": grad_norm,
                        "train/tokens": tokens,
                        "train/tokens_per_s": tokens_per_s,
                        "train/tflops": tokens_per_s * self.flops_per_token / 1e12,
                        "time/elapsed_s": time.perf_counter() - started,
                    },
                )
                interval_time, interval_tokens = 0.0, 0
            if step % train.eval_every == 0 or step == train.max_steps:
                val = self.evaluate()
                self.log(step, val)
                self.save("latest", step)
                if val["val/loss"] < self.best_val_loss:
                    self.best_val_loss = val["val/loss"]
                    self.save("best", step)
        sample = self.sample(train.max_steps)
        return RunResult(self.run_dir, train.max_steps, val["val/loss"], self.best_val_loss, sample)

    def close(self) -> None:
        for logger in getattr(self, "loggers", []):
            logger.close()
        if hasattr(self, "metrics"):
            self.metrics.close()


def run(
    experiment: Experiment,
    run_dir: Path | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train ``experiment``, writing its run directory (default ``runs/<name>``)."""
    run_dir = Path(run_dir or Path("runs") / experiment.name)
    prepare_run_dir(run_dir, overwrite)
    trainer = None
    try:
        trainer = Trainer(experiment, run_dir, registry or default_registry())
        return trainer.fit()
    finally:
        if trainer is not None:
            trainer.close()
