"""TensorBoard: scalars, histograms, images, text and the config as hparams.

Needs the ``tensorboard`` extra (``pip install 'tel[tensorboard]'``). Event files go
into ``runs/<name>/tensorboard/``; look at them with ``tensorboard --logdir runs``.
A resumed run drops the events logged after its checkpoint's step (TensorBoard's
``purge_step``), as the core does for ``metrics.jsonl``; a fresh run starts the folder
afresh. The writer is opened at the first record, so building the logger leaves an
old run's folder as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from tel_core.plugin import Logger, LoggerContext, TelError, hookimpl

EVENT_FILES = "events.out.tfevents.*"


@attrs.frozen
class TensorBoardOptions:
    #: The folder of the event files, relative to the run directory.
    dir: str = "tensorboard"
    #: Seconds between writes of pending events to disk (all are written on close).
    flush_secs: int = attrs.field(default=30, validator=attrs.validators.ge(1))


def summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module needs the tensorboard package
        raise TelError(
            "logger 'tensorboard' needs the tensorboard package: pip install 'tel[tensorboard]'"
        ) from None
    return SummaryWriter


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as TensorBoard hparams: dotted keys; numbers, strings and booleans kept,
    lists as text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat


class TensorBoardLogger(Logger):
    """TensorBoard event files: scalars, histograms, images, text, and the config as hparams."""

    def __init__(self, options: TensorBoardOptions, ctx: LoggerContext) -> None:
        self.SummaryWriter = summary_writer()
        self.options = options
        self.ctx = ctx
        self.dir = ctx.run_dir / options.dir
        self.writer: Any = None

    def _open(self) -> Any:
        if self.writer is None:
            if self.ctx.start_step == 0:  # a fresh run: an old run's events would mix in
                for old in self.dir.glob(EVENT_FILES):
                    old.unlink()
            purge = self.ctx.start_step + 1 if self.ctx.start_step else None
            self.writer = self.SummaryWriter(
                str(self.dir), purge_step=purge, flush_secs=self.options.flush_secs
            )
            if self.ctx.start_step == 0:
                self._write_hparams()
        return self.writer

    def _write_hparams(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        # The summaries alone, into this run's file: SummaryWriter.add_hparams would
        # start another run in a subfolder. The metrics named are the loop's own.
        metrics = {"val/loss": math.nan, "train/loss": math.nan}
        for summary in hparams(flat_hparams(self.ctx.config), metrics):
            self.writer.file_writer.add_summary(summary)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        writer = self._open()
        for name, value in metrics.items():
            writer.add_scalar(name, value, step)

    def log_text(self, step: int, name: str, text: str) -> None:
        # TensorBoard renders text as Markdown: indented, it shows as written (code).
        self._open().add_text(name, "\n".join("    " + line for line in text.split("\n")), step)

    def log_histogram(self, step: int, name: str, histogram: Any) -> None:
        s = histogram.summary()
        self._open().add_histogram_raw(
            name,
            min=s["min"],
            max=s["max"],
            num=s["num"],
            sum=s["sum"],
            sum_squares=s["sum_squares"],
            bucket_limits=list(histogram.edges[1:]),
            bucket_counts=list(histogram.counts),
            global_step=step,
        )

    def log_image(self, step: int, name: str, image: Any) -> None:
        self._open().add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardLogger, options=TensorBoardOptions)
