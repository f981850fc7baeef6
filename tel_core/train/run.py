"""``run(experiment)``: what ``tel run`` calls, on every process of a torchrun launch.

It refuses a run directory that would mix two runs, finds the checkpoint to resume,
joins the process group, and hands the experiment to the ``Trainer``
(``tel_core.train.loop``).
"""

from __future__ import annotations

from pathlib import Path

from tel_core.config.schema import Experiment
from tel_core.registry.registry import Registry, default_registry
from tel_core.train.checkpoint import resume_checkpoint
from tel_core.train.device import resolve_device
from tel_core.train.distributed import from_environment, process_group
from tel_core.train.loop import RunResult, Trainer
from tel_core.train.run_dir import check_run_dir, prepare_run_dir


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
