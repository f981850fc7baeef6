"""The training loop every experiment shares.

One optimizer step sees ``batch_size`` sequences: a batch drawn at once, shared out over
the processes of a data-parallel run and, within each process, cut into micro-batches
whose gradients accumulate (``tel_core.data.batching``). The loss of a step is the sum of the
per-token losses over the real target tokens of the whole step divided by their number
(``tel_core.train.loss``), so the step's gradient does not depend on how the step is split.

A step, in order:

1. set the learning rate (the schedule's, times the batch-size scaling);
2. draw the step's batch;
3. forward and backward each micro-batch, under autocast (``tel_core.train.precision``), DDP's
   gradient all-reduce only on the last one (``tel_core.train.distributed``);
4. unscale (fp16), then the probes due look at the gradients (``tel_core.probes.runner``);
   measure the gradient norm and clip;
5. update, unless the loss or gradient is not finite (``nonfinite``), then the probes due
   look again (after the update, and on a fixed validation batch);
6. log, evaluate and checkpoint when due (``tel_core.train.checkpoint``);
7. stop here if Ctrl-C or SIGTERM asked to (``tel_core.train.stopping``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core import ui
from tel_core.config.schema import Experiment
from tel_core.config.serialise import to_dict
from tel_core.data.batching import (
    Batch,
    describe_validation,
    make_sampler,
    plan_batches,
    validation_rows,
)
from tel_core.data.token_cache import check_length, prepare_tokens
from tel_core.errors import ConfigError, TelError, one_line
from tel_core.model.decoder import build_model, parameter_groups
from tel_core.model.sampling import generate
from tel_core.probes.contract import ProbeContext
from tel_core.probes.runner import Probes, build_probes
from tel_core.registry.interfaces import DataContext, LoggerContext, OptimumContext, ScheduleContext
from tel_core.registry.registry import Registry, default_registry
from tel_core.train.checkpoint import (
    check_resumable,
    load_checkpoint,
    prune_step_files,
    save_checkpoint,
    step_file,
)
from tel_core.train.device import compile_model, peak_memory_mb, resolve_device
from tel_core.train.distributed import Distributed, from_environment, process_group
from tel_core.train.loss import step_loss
from tel_core.train.mfu import device_peak, mfu
from tel_core.train.precision import Precision, native_bf16
from tel_core.train.rng import rng_state, seed_everything, set_rng_state
from tel_core.train.run_dir import (
    MetricsFile,
    build_manifest,
    check_run_dir,
    clear_run_dir,
    prepare_run_dir,
    run_dir_errors,
    truncate_probe_records,
    write_config,
    write_manifest,
)
from tel_core.train.scoring import metrics as val_metrics
from tel_core.train.scoring import score_sums, target_bytes
from tel_core.train.stopping import Stopped, StopSignals
from tel_core.ui import truncate_metrics


@attrs.frozen
class RunResult:
    run_dir: Path
    steps: int
    final_val_loss: float
    best_val_loss: float
    sample: str


@attrs.define
class Progress:
    """Where a run stands: saved in every checkpoint beside the components' states."""

    step: int = 0  # optimizer steps taken
    tokens: int = 0  # real (non-padding) target tokens trained on
    best_val_loss: float = math.inf
    elapsed_s: float = 0.0  # wall time of the run so far, across resumes
    checkpoint_step: int | None = None  # the step latest.pt holds


@attrs.frozen
class StepResult:
    loss: float
    grad_norm: float  # before clipping
    tokens: int  # real target tokens in the step, every process together
    lr: float
    clipped: bool
    finite: bool  # loss (and, without a gradient scaler, gradient norm) finite
    updated: bool  # False when the update was skipped


@attrs.define
class Meter:
    """Training time and tokens since the last log line (for tokens/s and time/step_s)."""

    seconds: float = 0.0
    tokens: int = 0
    steps: int = 0
    probe_seconds: float = 0.0  # spent in probes: not part of seconds

    def add(self, seconds: float, tokens: int, probe_seconds: float = 0.0) -> None:
        self.seconds += seconds
        self.tokens += tokens
        self.steps += 1
        self.probe_seconds += probe_seconds


class Trainer:
    """Builds an experiment's components from the registry and trains them."""

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
        train = experiment.train
        seed_everything(experiment.seed)
        self.device = device or resolve_device(train.device, self.world.local_rank)
        self.precision = Precision(
            train.precision, self.device, experiment.model.d_model, train.compile, train.tf32
        )
        if self.precision.name == "bf16" and not native_bf16(self.device):
            self.info(
                f"{experiment.name}: this {self.device.type} has no bf16 arithmetic, so bf16 "
                f"is emulated and usually much slower than fp32"
            )
        # For train/mfu. One process a machine measures a CPU's peak; the others read it.
        with self.world.local_main_first():
            self.peak = device_peak(self.precision.name, self.device)
        self.plan = plan_batches(train, self.world.world_size)
        self.progress = Progress()
        self.metrics: MetricsFile | None = None
        self.loggers: list[Any] = []
        # Build every component first, then clear the old run (--overwrite), then write:
        # an experiment that fails to start must cost the run directory nothing.
        try:
            self._build_data()
            self._build_model()
            self._build_optimizer()
            self._build_probes()  # on every process: a probe may need all of them
            if checkpoint is not None:
                self.load_state_dict(checkpoint)
            if self.world.is_main:  # one process writes the run directory and logs
                self._build_loggers()
                self._start_run_dir(overwrite, resumed_from=checkpoint and checkpoint["step"])
        except BaseException:
            self.close()  # what was built so far: a live progress bar, open files
            raise

    # -- building --------------------------------------------------------------

    def _build_data(self) -> None:
        cfg = self.exp
        self.info(f"{cfg.name}: tokenizing {cfg.data.dataset.name} with {cfg.data.tokenizer.name}")
        dataset = self.registry.build(
            "dataset", cfg.data.dataset, DataContext(cfg.data.val_fraction, cfg.seed)
        )
        self.tokenizer = self.registry.build("tokenizer", cfg.data.tokenizer)
        # Under torchrun one process per machine tokenizes; the others read its cache.
        with self.world.local_main_first():
            progress = self.world.local_rank == 0
            self.splits = splits = prepare_tokens(
                cfg.data, dataset, self.tokenizer, self.registry, progress=progress
            )
        for split, tokens in (("train", splits.train), ("val", splits.val)):
            check_length(tokens, cfg.data.block_size, split, cfg.data.dataset.name)
        mode, block = cfg.data.batching, cfg.data.block_size
        self.sampler = make_sampler(
            mode, splits.train, splits.train_offsets, block, cfg.seed, "train"
        )
        self.val_batches = validation_rows(cfg, splits.val, splits.val_offsets)
        # A synthetic task may know the best reachable loss: evaluations report the excess.
        self.optimum = dataset.optimum(OptimumContext(self.tokenizer, block, mode))
        # Encoded now, so that a prompt the tokenizer refuses fails before training, not after.
        try:
            self.prompt_ids = list(self.tokenizer.encode(cfg.sample.prompt)) or [0]
        except (TelError, ValueError, KeyError) as exc:
            why = str(exc) if isinstance(exc, TelError) else one_line(exc)
            raise ConfigError(f"[sample] prompt = {cfg.sample.prompt!r}: {why}") from exc
        # Bits per byte needs the bytes behind the (real) validation targets: count them once.
        self.val_bytes = target_bytes(self.tokenizer, self.val_batches)

    def _build_model(self) -> None:
        cfg, train = self.exp, self.exp.train
        self.model = build_model(
            cfg.model, self.tokenizer.vocab_size, cfg.data.block_size, self.registry
        ).to(self.device)
        self.model.activation_checkpointing = train.activation_checkpointing
        self.flops_per_token = self.model.flops_per_token()
        if self.world.rank > 0:
            # Every process built the same weights from the same seed (and DDP starts
            # them all from rank 0's); from here on, each draws its own dropout masks.
            torch.manual_seed(cfg.seed + self.world.rank)
        # self.model: the plain module (evaluation, sampling, checkpoints);
        # self.ddp: the module that averages gradients across processes (or the model);
        # self.train_model: what the training step calls (self.ddp, compiled if asked).
        self.ddp = self.world.wrap(self.model, self.device)
        self.train_model = self.ddp
        if train.compile:
            self.train_model = compile_model(self.ddp, self.device, self.info)

    def _build_optimizer(self) -> None:
        cfg, train = self.exp, self.exp.train
        base_lr = getattr(cfg.optimizer.options, "lr", None)
        if not isinstance(base_lr, float):
            raise ConfigError(f"optimizer {cfg.optimizer.name!r} has no float option 'lr'")
        self.lr_scale = train.lr_scale
        if self.lr_scale != 1.0:
            self.info(
                f"{cfg.name}: learning rates x {self.lr_scale:.4g} ({train.lr_scaling} scaling, "
                f"batch {train.batch_size} against reference {train.reference_batch_size})"
            )
        peak = base_lr * self.lr_scale
        self.optimizer = self.registry.build(
            "optimizer", cfg.optimizer, parameter_groups(self.model), peak
        )
        # An optimizer may give groups their own learning rates (say, embeddings x 10):
        # the schedule then moves every group's rate, keeping these ratios.
        for group in self.optimizer.param_groups:
            group.setdefault("lr_ratio", group["lr"] / peak)
        self.lr_at = self.registry.build(
            "schedule", cfg.schedule, ScheduleContext(base_lr, train.max_steps)
        )

    def _build_probes(self) -> None:
        cfg = self.exp
        ctx = ProbeContext(
            self.model,
            self.tokenizer.vocab_size,
            cfg.data.block_size,
            cfg.train.max_steps,
            self.device,
            self.world,
        )
        self.probes = Probes(
            build_probes(cfg, self.registry, ctx),
            ctx,
            val_batch=self.val_batches[0],
            autocast=self.precision.autocast,
            log=self.log,
            loggers=self.loggers,  # filled by _build_loggers, on rank 0
            run_dir=self.run_dir,
            name=cfg.name,
        )

    def _build_loggers(self) -> None:
        exp = self.exp
        ctx = LoggerContext(
            self.run_dir, exp.name, exp.train.max_steps, self.progress.step, to_dict(exp)
        )
        for selection in exp.loggers:
            self.loggers.append(self.registry.build("logger", selection, ctx))

    def _start_run_dir(self, overwrite: bool, resumed_from: int | None) -> None:
        """Everything is built: only now replace the old run, or trim a resumed one."""
        with run_dir_errors(self.run_dir):
            if overwrite:
                clear_run_dir(self.run_dir)
            if resumed_from is not None:  # the steps after the checkpoint are trained again
                truncate_metrics(self.run_dir / "metrics.jsonl", resumed_from)
                truncate_probe_records(self.run_dir, resumed_from)
            self._write_run_files(resumed_from)
            self.metrics = MetricsFile(self.run_dir / "metrics.jsonl")

    def _write_run_files(self, resumed_from: int | None) -> None:
        cfg, plan = self.exp, self.plan
        (self.run_dir / "tokenizer.json").write_text(
            json.dumps({"name": cfg.data.tokenizer.name, "state": self.tokenizer.state_dict()})
        )
        write_config(self.run_dir, cfg)
        n_params = self.model.num_parameters()
        tokens_per_step = plan.batch_size * cfg.data.block_size
        write_manifest(
            self.run_dir,
            build_manifest(
                cfg,
                self.registry,
                device=str(self.device),
                device_name=torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else None,
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
                tokens={"train": len(self.splits.train), "val": len(self.splits.val)},
                token_cache=str(self.splits.cache_dir) if self.splits.cache_dir else None,
                resumed_from_step=resumed_from,
                validation=describe_validation(cfg, self.val_batches, self.val_bytes),
            ),
        )
        padded = " at most (padding excluded)" if cfg.data.batching == "pad" else ""
        self.info(
            f"{cfg.name}: {n_params:,} parameters, vocab {self.tokenizer.vocab_size}, "
            f"{len(self.splits.train):,} train / {len(self.splits.val):,} val tokens, "
            f"{plan.batch_size} sequences = {tokens_per_step:,} tokens per step{padded} "
            f"({plan.world_size} process(es) x {plan.accumulation_steps} micro-batch(es) of "
            f"{plan.micro_size}), {self.precision.name}, on {self.device}"
        )

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
                with self.precision.autocast():
                    logits = self.train_model(x)
                loss = step_loss(logits, y, reduction, batch.total_tokens, batch.total_rows)
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
        """The metrics of a log line: the step's own, and rates since the last line."""
        tokens_per_s = meter.tokens / meter.seconds
        probes = {"time/probes_s": meter.probe_seconds} if self.probes else {}
        return {
            "train/loss": result.loss,
            "train/lr": result.lr,
            "train/grad_norm": result.grad_norm,  # before clipping
            "train/clipped": int(result.clipped),
            "train/skipped": int(not result.updated),
            "train/tokens": self.progress.tokens,  # real target tokens, padding excluded
            "train/epoch": self.progress.tokens / len(self.splits.train),  # passes over train
            "train/tokens_per_step": result.tokens,
            "train/tokens_per_s": tokens_per_s,
            "train/tflops": tokens_per_s * self.flops_per_token / 1e12,
            "train/mfu": mfu(tokens_per_s, self.flops_per_token, self.peak, self.world.world_size),
            "time/step_s": meter.seconds / meter.steps,
            "time/elapsed_s": self.progress.elapsed_s,
            "mem/peak_mb": peak_memory_mb(self.device),
            **probes,  # seconds spent in probes since the last line
        }

    def nonfinite(self, step: int, result: StepResult) -> None:
        """A non-finite loss or gradient: stop (keeping the last checkpoint) or skip."""
        what = f"the loss became {result.loss} (gradient norm {result.grad_norm}) at step {step}"
        if self.exp.train.nonfinite == "stop":
            if self.metrics is not None:  # so that the run directory says how it ended
                self.metrics.write(step, {"train/loss": result.loss, "train/diverged": 1})
            raise TelError(
                f"{what}; lower optimizer.lr, set train.grad_clip, or set "
                f'train.nonfinite = "skip"; {self.kept()}'
            )
        self.info(f'{self.exp.name}: {what}: update skipped (nonfinite = "skip")')

    def kept(self) -> str:
        if self.progress.checkpoint_step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint (step {self.progress.checkpoint_step}) is kept"

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

    # -- evaluation and sampling -----------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the fixed validation rows (each process scores its share)."""
        self.model.eval()
        sums = score_sums(
            self.model,
            self.val_batches,
            self.device,
            self.precision.autocast,
            self.world.rank,
            self.world.world_size,
            answers=self.optimum and self.optimum.answers,
        )
        self.model.train()
        optimum_bits = self.optimum and self.optimum.bits_per_token
        return val_metrics(self.world.sum(sums).tolist(), self.val_bytes, optimum_bits)

    def sample(self, step: int) -> str:
        cfg = self.exp.sample
        if cfg.max_new_tokens == 0:
            return ""
        prompt = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.exp.seed)
        with self.precision.autocast():
            ids = generate(
                self.model, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, generator
            )
        text = self.tokenizer.decode(ids[0].tolist())
        with (
            run_dir_errors(self.run_dir),
            open(self.run_dir / "samples.txt", "a", encoding="utf-8") as f,
        ):
            f.write(
                f"--- step {step}, prompt {cfg.prompt!r}, temperature {cfg.temperature}, "
                f"top_k {cfg.top_k}\n{text}\n"
            )
        for logger in self.loggers:
            logger.log_text(step, "sample", text)
        return text

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self, step: int, val_loss: float | None = None) -> None:
        """latest.pt; best.pt at a new best val loss; a step snapshot every checkpoint_every.

        Every process takes part (their random states are gathered); rank 0 writes.
        """
        train = self.exp.train
        if val_loss is not None and not math.isfinite(val_loss):
            raise TelError(f"the validation loss became {val_loss} at step {step}; {self.kept()}")
        names = ["latest.pt"]
        if val_loss is not None and val_loss < self.progress.best_val_loss:
            self.progress.best_val_loss = val_loss
            names.append("best.pt")
        if train.checkpoint_every and step % train.checkpoint_every == 0:
            names.append(step_file(step))
        self.progress.checkpoint_step = step
        state = self.state_dict(step)
        if self.world.is_main:
            directory = self.run_dir / "checkpoints"
            save_checkpoint([directory / name for name in names], state)
            prune_step_files(directory, train.keep_last)

    def state_dict(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.precision.state_dict(),
            "data": self.sampler.state_dict(),
            "rng": self.world.gather(rng_state()),  # one state per process, by rank
            "best_val_loss": self.progress.best_val_loss,
            "tokens": self.progress.tokens,
            "elapsed_s": self.progress.elapsed_s,
            "config": to_dict(self.exp),
            "probes": self.probes.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: the exact state after its step."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.precision.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["data"])
            self.probes.load_state_dict(state.get("probes", {}))
            states = state["rng"]
            set_rng_state(states[self.world.rank % len(states)])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            where = state.get("file", "the checkpoint")
            raise TelError(
                f"cannot resume from {where} (step {state['step']}): {one_line(exc)}"
            ) from exc
        if len(states) != self.world.world_size:
            self.info(
                f"{self.exp.name}: saved by {len(states)} process(es), resumed on "
                f"{self.world.world_size}: the data stream continues exactly, dropout masks do not"
            )
            if self.world.rank >= len(states):
                torch.manual_seed(self.exp.seed + self.world.rank + state["step"])
        self.progress = Progress(
            step=state["step"],
            tokens=state["tokens"],
            best_val_loss=state["best_val_loss"],
            elapsed_s=state["elapsed_s"],
            checkpoint_step=state["step"],
        )
        self.info(f"{self.exp.name}: resuming after step {state['step']}")

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        if self.metrics is not None:
            self.metrics.close()


def resume_checkpoint(
    run_dir: Path, experiment: Experiment, path: Path | None = None
) -> dict[str, Any]:
    """The checkpoint ``--resume`` continues from (``path``, default the run directory's
    ``checkpoints/latest.pt``), once it is known to fit ``experiment``."""
    state = load_checkpoint(path or run_dir / "checkpoints" / "latest.pt")
    check_resumable(state, to_dict(experiment), run_dir)
    if state["step"] >= experiment.train.max_steps:
        raise TelError(
            f"{run_dir} has already trained {state['step']} of max_steps = "
            f"{experiment.train.max_steps}; raise it to continue (--set train.max_steps=N)"
        )
    return state


def run(
    experiment: Experiment,
    run_dir: Path | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
    resume: bool | str | Path = False,
) -> RunResult:
    """Train ``experiment``, writing its run directory (default ``runs/<name>``).

    ``resume`` continues from the run directory's ``checkpoints/latest.pt`` (True) or from
    the checkpoint file it names (``runs/x/checkpoints/step_0000500.pt``). Under
    torchrun, every process calls this; they train together (data parallel).
    """
    run_dir = Path(run_dir or Path("runs") / experiment.name)
    world = from_environment()
    resume_from = None if isinstance(resume, bool) else Path(resume)
    check_run_dir(run_dir, overwrite, resume_from or resume)  # every process refuses alike
    checkpoint = resume_checkpoint(run_dir, experiment, resume_from) if resume else None
    device = resolve_device(experiment.train.device, world.local_rank)
    trainer = None
    with process_group(world, device):
        try:
            if world.is_main:
                prepare_run_dir(run_dir)
            world.barrier()
            registry = registry or default_registry()
            trainer = Trainer(experiment, run_dir, registry, world, checkpoint, device, overwrite)
            return trainer.fit()
        finally:
            if trainer is not None:
                trainer.close()
            del trainer  # DDP holds the process group: let it go before the group does
