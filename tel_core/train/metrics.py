"""The numbers of a training log line: the step's own, and rates since the last line.

Tokens are real (non-padding) target tokens; tokens/s leaves out the time spent in
probes (``time/probes_s``, reported apart); MFU is the model's training FLOPs per token
(``LanguageModel.flops_per_token``) at that rate, over the device's peak for the run's
precision (``tel_core.train.mfu``).
"""

from __future__ import annotations

import attrs
import torch

from tel_core.train.device import peak_memory_mb
from tel_core.train.mfu import Peak, mfu


@attrs.frozen
class StepResult:
    """What one optimizer step did (``Trainer.train_step``)."""

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


def train_metrics(
    result: StepResult,
    meter: Meter,
    *,
    tokens: int,
    train_tokens: int,
    elapsed_s: float,
    flops_per_token: int,
    peak: Peak,
    processes: int,
    device: torch.device,
    probes: bool,
) -> dict[str, float]:
    """A log line: ``tokens`` trained on so far, of ``train_tokens`` in the train split."""
    tokens_per_s = meter.tokens / meter.seconds
    probe_time = {"time/probes_s": meter.probe_seconds} if probes else {}
    return {
        "train/loss": result.loss,
        "train/lr": result.lr,
        "train/grad_norm": result.grad_norm,  # before clipping
        "train/clipped": int(result.clipped),
        "train/skipped": int(not result.updated),
        "train/tokens": tokens,  # real target tokens, padding excluded
        "train/epoch": tokens / train_tokens,  # passes over the train split
        "train/tokens_per_step": result.tokens,
        "train/tokens_per_s": tokens_per_s,
        "train/tflops": tokens_per_s * flops_per_token / 1e12,
        "train/mfu": mfu(tokens_per_s, flops_per_token, peak, processes),
        "time/step_s": meter.seconds / meter.steps,
        "time/elapsed_s": elapsed_s,
        "mem/peak_mb": peak_memory_mb(device),
        **probe_time,  # seconds spent in probes since the last line
    }
