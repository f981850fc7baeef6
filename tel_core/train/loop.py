"""The training loop every experiment shares.

One optimizer step sees ``batch_size`` sequences: a batch drawn at once, shared out over
the processes of a data-parallel run and, within each process, cut into micro-batches
whose gradients accumulate (``tel_core.data.batching``). The loss of a step is the sum of
the per-token losses over the real target tokens of the whole step divided by their
number (``tel_core.train.loss``), so the step's gradient does not depend on how the step
is split.

A step, in order:

1. set the learning rate (the schedule's, times the batch-size scaling);
2. draw the step's batch;
3. forward and backward each micro-batch, under autocast (``tel_core.train.precision``),
   DDP's gradient all-reduce only on the last one (``tel_core.train.distributed``);
4. unscale (fp16), then the probes due look at the gradients (``tel_core.probes.runner``);
   measure the gradient norm and clip;
5. update, unless the loss or gradient is not finite (``nonfinite``), then the probes due
   look again (after the update, and on a fixed validation batch);
6. log (``tel_core.train.metrics``), evaluate and checkpoint when due
   (``tel_core.train.checkpoint``);
7. stop here if Ctrl-C or SIGTERM asked to (``tel_core.train.stopping``).

What the loop trains is built by ``tel_core.train.components``; its run directory is
``tel_core.train.run_dir``'s; ``tel_core.train.run.run`` starts it all.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core import ui
from tel_core.config.schema import Experiment
from tel_core.config.serialise import to_dict
from tel_core.data.batching import Batch, describe_validation, plan_batches
from tel_core.errors import TelError
from tel_core.model.sampling import generate
from tel_core.probes.contract import ProbeContext
from tel_core.registry.registry import Registry
from tel_core.train import components
from tel_core.train.checkpoint import Checkpoints, Progress
from tel_core.train.device import resolve_device
from tel_core.train.distributed import Distributed
from tel_core.train.metrics import Meter, StepResult, train_metrics
from tel_core.train.mfu import device_peak
from tel_core.train.rng import seed_everything
from tel_core.train.run_dir import MetricsFile, build_manifest, start_run_dir, write_sample
from tel_core.train.scoring import metrics as val_metrics
from tel_core.train.scoring import score_sums
from tel_core.train.stopping import Stopped, StopSignals


@attrs.frozen
class RunResult:
    run_dir: Path
    steps: int
    final_val_loss: float
    best_val_loss: float
    sample: str


class Trainer:
    """An experiment's components, built from the registry, and the loop that trains them."""

    def __init__(
        self,
        experiment: Experiment,
        run_dir: Path,
        registry: Registry,
        world: Distributed | None = None,
        checkpoint: dict[str, Any] | None = None,
        device: torch.device | None = None,
        overwrite: bool = False,
    ) -> None:
        self.exp = experiment
        self.run_dir = run_dir
        self.registry = registry
        self.world = world or Distributed()
        seed_everything(experiment.seed)
        self.device = device or resolve_device(experiment.train.device, self.world.local_rank)
        self.precision = components.build_precision(experiment, self.device, self.info)
        # For train/mfu. One process a machine measures a CPU's peak; the others read it.
        with self.world.local_main_first():
            self.peak = device_peak(self.precision.name, self.device)
        self.plan = plan_batches(experiment.train, self.world.world_size)
        self.progress = Progress()
        self.metrics: MetricsFile | None = None
        self.loggers: list[Any] = []
        # Build every component first, then clear the old run (--overwrite), then write:
        # an experiment that fails to start must cost the run directory nothing.
        try:
            self._build(registry)
            if checkpoint is not None:
                self.load_state_dict(checkpoint)
            if self.world.is_main:  # one process writes the run directory and logs
                for logger in components.build_loggers(
                    experiment, registry, self.run_dir, self.progress.step
                ):
                    self.loggers.append(logger)
                resumed_from = checkpoint["step"] if checkpoint is not None else None
                self._start_run_dir(overwrite, resumed_from)
        except BaseException:
            self.close()  # what was built so far: a live progress bar, open files
            raise

    # -- one step ----------------------------------------------------------------

    def accumulate(self, batch: Batch) -> torch.Tensor:
        """Forward and backward over this process's micro-batches of a step, leaving the
        step's gradient in ``.grad``; returns the step's loss over every process."""
        self.model.train()
        reduction = self.exp.train.loss_reduction
        pieces = batch.micro_batches(self.plan.micro_size)
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(pieces):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self.world.no_sync(self.ddp, sync=i == len(pieces) - 1):
                # the forward pass under autocast and this micro-batch's share of the loss
                loss = self.train_model(x, y, reduction, batch.total_tokens, batch.total_rows)
                # DDP averages gradients over the processes, but each process's loss is
                # already its share of the whole step's: scale back up so they add up.
                self.precision.backward(loss * self.world.world_size)
            total += loss.detach()
        return self.world.sum(total)

    def train_step(self, step: int) -> StepResult:
        """One optimizer step (``step`` counts from 1)."""
        train = self.exp.train
        lr = self.lr_at(step - 1) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_ratio"]
        # The whole step's batch is drawn at once: the data a step sees must not depend
        # on how it is split into processes and micro-batches.
        batch = self.sampler.sample(self.plan.batch_size, self.world.rank, self.world.world_size)
        if self.device.type == "cuda":  # page-locked, so that the copies are asynchronous
            batch = batch.pin_memory()
        step_total = self.accumulate(batch)
        self.precision.unscale(self.optimizer)
        self.probes.after_backward(step)  # nothing at all unless a probe is due
        norm = torch.nn.utils.get_total_norm(
            [p.grad for p in self.model.parameters() if p.grad is not None]
        )
        # torch's clipping factor (clipped to 1), read back with the loss and the norm: one
        # read-back a step, each waiting for the device. At 1 clipping would multiply every
        # gradient by 1, so it is skipped (grad_clip = 0: measure the norm, change nothing).
        factor = train.grad_clip / (norm + 1e-6) if train.grad_clip else torch.ones_like(norm)
        loss, grad_norm, factor = torch.stack(
            [step_total, norm.to(step_total), factor.to(step_total)]
        ).tolist()
        if factor < 1.0:
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), train.grad_clip, norm)
        # With fp16 an overflowing gradient is routine: the scaler skips that update.
        finite = math.isfinite(loss) and (
            math.isfinite(grad_norm) or self.precision.scaler is not None
        )
        updated = self.precision.step(self.optimizer, finite)
        self.optimizer.zero_grad(set_to_none=True)
        clipped = 0 < train.grad_clip < grad_norm
        return StepResult(loss, grad_norm, batch.total_tokens, lr, clipped, finite, updated)

    # -- the loop ----------------------------------------------------------------

    def fit(self) -> RunResult:
        train = self.exp.train
        started = time.perf_counter() - self.progress.elapsed_s
        meter = Meter()  # time and tokens since the last log line
        val = {"val/loss": math.nan}
        first = self.progress.step + 1
        with StopSignals() as signals:
            for step in range(first, train.max_steps + 1):
                t0, probe_s = time.perf_counter(), self.probes.seconds
                result = self.train_step(step)
                self.probes.after_step(step, result)
                probe_s = self.probes.seconds - probe_s
                seconds = time.perf_counter() - t0 - probe_s  # tokens/s leaves probes out
                if step == first and train.compile:
                    self.info(f"{self.exp.name}: the first step (compiling) took {seconds:.1f} s")
                self.progress.step = step
                self.progress.tokens += result.tokens
                self.progress.elapsed_s = time.perf_counter() - started
                meter.add(seconds, result.tokens, probe_s)
                if not result.finite:
                    self.nonfinite(step, result)
                last = step == train.max_steps
                if step % train.log_every == 0 or last:
                    self.log(step, self.train_metrics(result, meter))
                    meter = Meter()
                evaluate = step % train.eval_every == 0 or last
                if evaluate:
                    val = self.evaluate()
                    self.log(step, val)
                if evaluate or (train.checkpoint_every and step % train.checkpoint_every == 0):
                    self.checkpoint(step, val["val/loss"] if evaluate else None)
                # Every process stops at the same step, whichever got the signal; a signal
                # during the last step lets the run finish (there is nothing to resume).
                received = self.world.max(signals.received or 0, self.device)
                if received and not last:
                    self.stop(step, received)
        sample = self.sample(train.max_steps) if self.world.is_main else ""
        return RunResult(
            self.run_dir, train.max_steps, val["val/loss"], self.progress.best_val_loss, sample
        )

    def train_metrics(self, result: StepResult, meter: Meter) -> dict[str, float]:
        return train_metrics(
            result,
            meter,
            tokens=self.progress.tokens,
            train_tokens=len(self.data.splits.train),
            elapsed_s=self.progress.elapsed_s,
            flops_per_token=self.flops_per_token,
            peak=self.peak,
            processes=self.world.world_size,
            device=self.device,
            probes=bool(self.probes),
        )

    def nonfinite(self, step: int, result: StepResult) -> None:
        """A non-finite loss or gradient: stop (keeping the last checkpoint) or skip."""
        what = f"the loss became {result.loss} (gradient norm {result.grad_norm}) at step {step}"
        if self.exp.train.nonfinite == "stop":
            if self.metrics is not None:  # so that the run directory says how it ended
                self.metrics.write(step, {"train/loss": result.loss, "train/diverged": 1})
            raise TelError(
                f"{what}; lower optimizer.lr, set train.grad_clip, or set "
                f'train.nonfinite = "skip"; {self.progress.kept()}'
            )
        self.info(f'{self.exp.name}: {what}: update skipped (nonfinite = "skip")')

    def stop(self, step: int, signum: int) -> None:
        """Save the state after ``step`` and raise ``Stopped`` (exit code 128 + signum)."""
        if self.progress.checkpoint_step != step:
            self.checkpoint(step)
        self.world.barrier()  # every process waits until rank 0 has written it
        raise Stopped.by_signal(signum, step, str(self.run_dir / "checkpoints" / "latest.pt"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.write(step, metrics)
        for logger in self.loggers:
            logger.log(step, metrics)

    def info(self, message: str) -> None:
        if self.world.is_main:
            ui.info(message)

    # -- evaluation, sampling, checkpoints -----------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the fixed validation rows (each process scores its share)."""
        self.model.eval()
        optimum = self.data.optimum
        sums = score_sums(
            self.model,
            self.data.val_batches,
            self.device,
            self.precision.autocast,
            self.world.rank,
            self.world.world_size,
            answers=optimum and optimum.answers,
        )
        self.model.train()
        optimum_bits = optimum and optimum.bits_per_token
        return val_metrics(self.world.sum(sums).tolist(), self.data.val_bytes, optimum_bits)

    def sample(self, step: int) -> str:
        cfg = self.exp.sample
        if cfg.max_new_tokens == 0:
            return ""
        prompt = torch.tensor([self.data.prompt_ids], dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.exp.seed)
        with self.precision.autocast():
            ids = generate(
                self.model, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, generator
            )
        text = self.tokenizer.decode(ids[0].tolist())
        write_sample(self.run_dir, step, cfg, text)
        for logger in self.loggers:
            logger.log_text(step, "sample", text)
        return text

    def checkpoint(self, step: int, val_loss: float | None = None) -> None:
        self.checkpoints.save(step, self.progress, val_loss)

    def state_dict(self, step: int) -> dict[str, Any]:
        return self.checkpoints.state_dict(step, self.progress)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: the exact state after its step."""
        self.progress = self.checkpoints.load_state_dict(state)
        saved_by = len(state["rng"])
        if saved_by != self.world.world_size:
            self.info(
                f"{self.exp.name}: saved by {saved_by} process(es), resumed on "
                f"{self.world.world_size}: the data stream continues exactly, dropout masks do not"
            )
            if self.world.rank >= saved_by:
                torch.manual_seed(self.exp.seed + self.world.rank + state["step"])
        self.info(f"{self.exp.name}: resuming after step {state['step']}")

    # -- building, and the run directory ---------------------------------------------

    def _build(self, registry: Registry) -> None:
        exp, world = self.exp, self.world
        self.data = components.build_data(exp, registry, world, self.info)
        self.tokenizer, self.sampler = self.data.tokenizer, self.data.sampler
        self.model, self.ddp, self.train_model = components.build_training_model(
            exp, self.tokenizer.vocab_size, self.device, self.precision, world, registry, self.info
        )
        self.flops_per_token = self.model.flops_per_token()
        self.optimizer, self.lr_at, self.lr_scale = components.build_optimizer(
            exp, self.model, registry, self.info
        )
        ctx = ProbeContext(
            self.model, self.tokenizer.vocab_size, exp.data.block_size, exp.train.max_steps,
            self.device, world,
        )  # fmt: skip
        self.probes = components.build_run_probes(
            exp,
            registry,
            ctx,
            val_batch=self.data.val_batches[0],
            autocast=self.precision.autocast,
            log=self.log,
            loggers=self.loggers,  # filled once the loggers are built, on rank 0
            run_dir=self.run_dir,
        )
        self.checkpoints = Checkpoints(
            self.run_dir / "checkpoints",
            exp.train,
            to_dict(exp),
            world,
            {
                "model": self.model,
                "optimizer": self.optimizer,
                "scaler": self.precision,
                "data": self.sampler,
                "probes": self.probes,
            },
        )

    def _start_run_dir(self, overwrite: bool, resumed_from: int | None) -> None:
        cfg, plan, splits = self.exp, self.plan, self.data.splits
        n_params = self.model.num_parameters()
        tokens_per_step = plan.batch_size * cfg.data.block_size
        cuda = self.device.type == "cuda"
        manifest = build_manifest(
            cfg,
            self.registry,
            device=str(self.device),
            device_name=torch.cuda.get_device_name(self.device) if cuda else None,
            torch_threads=torch.get_num_threads(),
            processes=plan.world_size,
            backend=self.world.backend(self.device),
            micro_batch_size=plan.micro_size,
            accumulation_steps=plan.accumulation_steps,
            tokens_per_step=tokens_per_step,
            precision=self.precision.name,
            precision_reason=self.precision.reason,
            peak_flops=self.peak.manifest(),
            lr_scale=self.lr_scale,
            parameters=n_params,
            flops_per_token=self.flops_per_token,
            vocab_size=self.tokenizer.vocab_size,
            tokens={"train": len(splits.train), "val": len(splits.val)},
            token_cache=str(splits.cache_dir) if splits.cache_dir else None,
            resumed_from_step=resumed_from,
            validation=describe_validation(cfg, self.data.val_batches, self.data.val_bytes),
        )
        self.metrics = start_run_dir(
            self.run_dir,
            overwrite=overwrite,
            resumed_from=resumed_from,
            experiment=cfg,
            tokenizer=self.tokenizer,
            manifest=manifest,
        )
        padded = " at most (padding excluded)" if cfg.data.batching == "pad" else ""
        self.info(
            f"{cfg.name}: {n_params:,} parameters, vocab {self.tokenizer.vocab_size}, "
            f"{len(splits.train):,} train / {len(splits.val):,} val tokens, "
            f"{plan.batch_size} sequences = {tokens_per_step:,} tokens per step{padded} "
            f"({plan.world_size} process(es) x {plan.accumulation_steps} micro-batch(es) of "
            f"{plan.micro_size}), {self.precision.name}, on {self.device}"
        )

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        if self.metrics is not None:
            self.metrics.close()
