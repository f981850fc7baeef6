"""Progress on the terminal: a rich progress bar with loss, lr, tokens/s, MFU and ETA.

When the output is not a terminal (CI, a pipe, a file) it prints plain lines instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from tel_core.plugin import Logger, LoggerContext, console, hookimpl


@attrs.frozen
class ConsoleOptions:
    #: Without a terminal, print a line every this many steps (0: about 20 lines a run).
    every: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def _status(metrics: Mapping[str, float]) -> str:
    parts = [f"loss {metrics['train/loss']:.4f}"]
    if "train/lr" in metrics:
        parts.append(f"lr {metrics['train/lr']:.2e}")
    if "train/tokens_per_s" in metrics:
        parts.append(f"{metrics['train/tokens_per_s']:,.0f} tok/s")
    if "train/mfu" in metrics:
        parts.append(f"MFU {100 * metrics['train/mfu']:.1f}%")
    return " │ ".join(parts)


class ConsoleLogger(Logger):
    """A progress bar (step, loss, lr, tokens/s, MFU, ETA); eval results and samples above it."""

    def __init__(self, options: ConsoleOptions, ctx: LoggerContext) -> None:
        self.console = console
        self.max_steps = ctx.max_steps
        self.every = options.every or max(1, ctx.max_steps // 20)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task(
            ctx.name, total=ctx.max_steps, completed=ctx.start_step, status=""
        )
        if self.live:
            self.progress.start()

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if "train/loss" in metrics:
            status = _status(metrics)
            self.progress.update(self.task, completed=step, status=status)
            if not self.live and (step % self.every == 0 or step == self.max_steps):
                self.console.print(f"step {step}/{self.max_steps} │ {status}", markup=False)
        if "val/loss" in metrics:
            line = f"step {step}: val loss {metrics['val/loss']:.4f}"
            if "val/ppl" in metrics:
                line += f" │ ppl {metrics['val/ppl']:.2f}"
            self.console.print(line, markup=False)

    def log_text(self, step: int, name: str, text: str) -> None:
        self.console.print(Panel(Text(text), title=f"{name} (step {step})", title_align="left"))

    def close(self) -> None:
        self.progress.stop()


@hookimpl
def register_loggers(register):
    register("console", ConsoleLogger, options=ConsoleOptions)
