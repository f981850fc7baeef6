"""``check_logger``: a logger must take whatever the loop logs, and lose none of it.

The metric records below have the shapes the training loop emits (``tests/
test_testing.py`` trains a tiny model and checks that the loop emits exactly these
names, so the two cannot drift apart), plus the edge cases a real run meets: NaN and
infinite values, a lone metric, large integers, names the loop does not use yet.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tel_core.registry.interfaces import Logger, LoggerContext
from tel_core.registry.media import Histogram
from tel_core.registry.registry import Component, Registry
from tel_core.testing.subject import check_options, fail, subject

#: What the loop logs every ``log_every`` steps.
TRAIN_METRICS: dict[str, float | int] = {
    "train/loss": 5.52,
    "train/lr": 3e-4,
    "train/grad_norm": 1.25,
    "train/clipped": 1,
    "train/skipped": 0,
    "train/tokens": 2048,
    "train/epoch": 0.0205,  # training tokens seen / the training split's tokens
    "train/tokens_per_step": 2048,
    "train/tokens_per_s": 18600.0,
    "train/tflops": 0.0021,
    "train/mfu": 0.42,
    "time/step_s": 0.11,
    "time/elapsed_s": 0.11,
    "mem/peak_mb": 412.5,
}
#: What the loop logs after each evaluation.
EVAL_METRICS: dict[str, float] = {
    "val/loss": 5.01,
    "val/ppl": 149.9,
    "val/bits_per_token": 7.23,
    "val/bits_per_byte": 7.23,
    "val/accuracy": 0.31,
    "val/accuracy_top5": 0.58,
}
#: (step, metrics) records as a run produces them, edge cases included.
LOOP_METRICS: tuple[tuple[int, dict[str, Any]], ...] = (
    (1, TRAIN_METRICS),
    (2, {**TRAIN_METRICS, "train/loss": 4.9, "train/tokens": 4096}),
    (2, EVAL_METRICS),
    (3, {**TRAIN_METRICS, "train/grad_norm": float("inf"), "train/tflops": float("nan")}),
    (3, {**EVAL_METRICS, "val/loss": float("nan"), "val/ppl": float("inf")}),
    (4, {"train/tokens": 10**13}),
    (5, {"grad_norm/blocks.0.attn": 0.25, "attn/entropy/layer0": 2.5, "stability/clipped": 0}),
)
#: What a probe's histogram and image look like when a logger receives them.
PROBE_HISTOGRAM = Histogram((0.0, 0.5, 1.0, 2.0), (3.0, 0.0, 1.5))
PROBE_IMAGE = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
#: Text as ``log_text`` receives it: a generated sample, with markup-like and non-ASCII text.
SAMPLE_TEXT = "def f():\n    return '[bold]not markup[/bold]' + \"☃ ü 漢\"\n\n\ttab\n"


def check_logger(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    run_dir: Path | None = None,
) -> None:
    """Check a logger against the ``register_loggers`` contract.

    Builds it with ``factory(options, LoggerContext(...))`` for a run directory (a fresh
    temporary one unless ``run_dir`` is given) with standard output and error captured,
    and checks: a ``tel_core.plugin.Logger``; ``close()`` right away works (a run
    may fail before its first step); ``log`` accepts every record of ``LOOP_METRICS``
    without changing the mapping it was handed (other loggers get the same one);
    ``log_text`` takes a multi-line sample; ``log_histogram`` and ``log_image`` take a
    probe's histogram and image (ignoring them is fine) without changing the image;
    after ``close()`` nothing written to
    standard output or error is left unflushed and no file in the run directory is left
    open; a resumed run (``start_step`` > 0) works too.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("logger", component, options, registry)
    check_options(s)
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        streams = stack.enter_context(_captured_streams())

        def build(start_step: int = 0) -> Logger:
            return s.build_a(Logger, "a Logger", logger_context(run_dir, start_step))

        with s.check("builds a tel_core.plugin.Logger"):
            logger = build()
        with s.check("close() before any log (a run that fails at once)"):
            logger.close()
            logger = build()
        for step, metrics in LOOP_METRICS:
            with s.check(f"log({step}, {_describe(metrics)})"):
                record = dict(metrics)
                logger.log(step, record)
                if record != metrics:
                    fail("log() changed the metrics mapping; the next logger gets the same one")
        with s.check("log_text"):
            logger.log_text(5, "sample", SAMPLE_TEXT)
        with s.check("log_histogram"):
            logger.log_histogram(5, "attn/distance_hist/layer0", PROBE_HISTOGRAM)
        with s.check("log_image"):
            image = PROBE_IMAGE.copy()
            logger.log_image(5, "attn/heatmap/layer0", image)
            if not np.array_equal(image, PROBE_IMAGE):
                fail("log_image() changed the image it was handed")
        with s.check("close"):
            logger.close()
        with s.check("flushes on close"):
            _flushed(streams, run_dir)
        with s.check("a resumed run"):
            logger = build(start_step=3)
            logger.log(4, TRAIN_METRICS)
            logger.close()
            _flushed(streams, run_dir)


def logger_context(run_dir: Path, start_step: int = 0) -> LoggerContext:
    """The context the kit builds loggers with: a small run's name, length and config."""
    config = {
        "name": "tel-kit",
        "seed": 0,
        "model": {"d_model": 32, "attention": {"name": "causal"}},
        "train": {"max_steps": 5, "batch_size": 4},
        "loggers": [{"name": "console"}],
    }
    return LoggerContext(run_dir, "tel-kit", max_steps=5, start_step=start_step, config=config)


def _describe(metrics: Mapping[str, Any]) -> str:
    names = list(metrics)
    return "{" + ", ".join(names[:2]) + (", ...}" if len(names) > 2 else "}")


class _TrackedStream(io.StringIO):
    """A stand-in for stdout or stderr that knows whether writes await a flush."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.pending = False

    def write(self, text: str) -> int:
        self.pending = self.pending or bool(text)
        return super().write(text)

    def flush(self) -> None:
        self.pending = False
        super().flush()


@contextlib.contextmanager
def _captured_streams() -> Iterator[list[_TrackedStream]]:
    streams = [_TrackedStream("standard output"), _TrackedStream("standard error")]
    with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
        yield streams


def _flushed(streams: list[_TrackedStream], run_dir: Path) -> None:
    for stream in streams:
        if stream.pending:
            fail(f"wrote to {stream.name} and did not flush it in close()")
    if still_open := _open_files_under(run_dir):
        fail(f"close() left {', '.join(sorted(still_open))} open; flush and close it")


def _open_files_under(directory: Path) -> set[str]:
    """Files under ``directory`` this process holds open (Linux; elsewhere: unknown, so none)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return set()
    root = str(directory.resolve())
    found = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(root + os.sep):
                found.add(os.path.relpath(target, root))
    return found
