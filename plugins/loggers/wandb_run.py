"""Weights & Biases: a run's metrics, samples, histograms and images in a W&B run.

Needs the ``wandb`` extra (``pip install 'tel[wandb]'``). W&B's files go into the run
directory (``runs/<name>/wandb/``) and the W&B run's id into ``runs/<name>/wandb_run_id``,
so that ``tel run --resume`` continues the same W&B run. ``mode = "offline"`` needs no
account or network: upload later with ``wandb sync runs/<name>/wandb/offline-run-*``.
The core builds loggers on rank 0 only, so under data parallel one process logs.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from tel_core.plugin import Logger, LoggerContext, TelError, hookimpl

#: The file in the run directory that keeps the W&B run's id for ``--resume``.
ID_FILE = "wandb_run_id"
SAMPLE_COLUMNS = ["prompt", "text", "step"]


@attrs.frozen
class WandbOptions:
    #: The W&B project.
    project: str = "tel"
    #: The W&B entity (user or team); default: your default entity.
    entity: str | None = None
    #: A group to gather runs under in the W&B interface (a sweep, a family).
    group: str | None = None
    #: Tags on the run.
    tags: tuple[str, ...] = ()
    #: The run's name in W&B; default: the experiment's name.
    name: str | None = None
    #: "online", "offline" (no network; `wandb sync` later) or "disabled"; default:
    #: wandb's own setting (WANDB_MODE, `wandb online` / `wandb offline`).
    mode: Literal["online", "offline", "disabled"] | None = None
    #: Notes shown with the run.
    notes: str | None = None


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise TelError("logger 'wandb' needs the wandb package: pip install 'tel[wandb]'") from None
    return wandb


def new_run_id() -> str:
    """Eight lowercase letters and digits, as W&B's own run ids."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbLogger(Logger):
    """Weights & Biases: metrics, samples as a table, histograms and images; resumes its W&B run."""

    def __init__(self, options: WandbOptions, ctx: LoggerContext) -> None:
        self.wandb = wandb = import_wandb()
        self.ctx = ctx
        id_file = ctx.run_dir / ID_FILE
        resuming = ctx.start_step > 0 and id_file.is_file()
        self.run_id = id_file.read_text().strip() if resuming else new_run_id()
        self.prompt = ctx.config.get("sample", {}).get("prompt", "")
        self.tables: dict[str, list[list[Any]]] = {}
        self._started = False
        try:
            self.run = wandb.init(
                project=options.project,
                entity=options.entity,
                group=options.group,
                tags=list(options.tags),
                name=options.name or ctx.name,
                notes=options.notes,
                mode=options.mode,
                dir=str(ctx.run_dir),
                id=self.run_id,
                resume="allow",
                config=dict(ctx.config),
                settings=wandb.Settings(console="off"),  # tel's console output is its own
            )
        except Exception as exc:  # no login, no network, a bad entity: wandb says which
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            login = "" if "wandb login" in first else "run `wandb login`, or "
            raise TelError(
                f"logger 'wandb' could not start a W&B run: {first} ({login}set "
                f'mode = "offline" in [[loggers]] to log without an account)'
            ) from None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._keep_id()
        self.run.log(dict(metrics), step=step)

    def log_text(self, step: int, name: str, text: str) -> None:
        """Samples go into the table ``samples`` (prompt, text, step); other text into
        ``text/<name>`` (step, text). Each table is logged again with its new row."""
        self._keep_id()
        rows = self.tables.setdefault(name, [])
        if name == "sample":
            rows.append([self.prompt, text, step])
            key, columns = "samples", SAMPLE_COLUMNS
        else:
            rows.append([step, text])
            key, columns = f"text/{name}", ["step", "text"]
        self.run.log({key: self.wandb.Table(columns=columns, data=rows)}, step=step)

    def log_histogram(self, step: int, name: str, histogram: Any) -> None:
        self._keep_id()
        counts, edges = list(histogram.counts), list(histogram.edges)
        self.run.log({name: self.wandb.Histogram(np_histogram=(counts, edges))}, step=step)

    def log_image(self, step: int, name: str, image: Any) -> None:
        self._keep_id()
        self.run.log({name: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()
        # finish() leaves writing the run's file to W&B's service process, which may
        # hold it until the process ends; stopping the service writes everything now
        # (unless another W&B run of this process still needs it).
        if self.wandb.run is None:
            self.wandb.teardown()

    def _keep_id(self) -> None:
        # At the first record, not when built: building must leave an old run (about to
        # be replaced, or not, if another component fails) as it was, and the core writes
        # this run's manifest only once every logger is built.
        if not self._started:
            (self.ctx.run_dir / ID_FILE).write_text(self.run_id + "\n")
            manifest = self.ctx.run_dir / "manifest.json"
            if manifest.is_file():
                self.run.save(str(manifest), base_path=str(self.ctx.run_dir), policy="now")
            self._started = True


@hookimpl
def register_loggers(register):
    register("wandb", WandbLogger, options=WandbOptions)
