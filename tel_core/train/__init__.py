"""Training: one experiment, from its components to its run directory.

Start with ``loop`` (``Trainer.fit``, ``train_step``, gradient accumulation); the rest
serves it:

- ``run``: ``run(experiment)``, what ``tel run`` calls: the run directory checked, a
  checkpoint to resume, the process group, the trainer;
- ``components``: building the data, model, optimizer, schedule, probes and loggers;
- ``run_dir``: the run directory's files, manifest and metrics.jsonl;
- ``checkpoint``: checkpoint files and when a run writes them; resuming;
- ``metrics``: the numbers of a log line, tokens/s and MFU (``mfu``: the device's peak);
- ``scoring``: loss, accuracy and bits per byte over validation rows;
- ``loss``, ``precision``, ``distributed``, ``device``, ``rng``, ``stopping``: one concern each;
- ``experiment``: loading an experiment with the checks that need a model or probes.

May import: ``tel_core.probes``, ``tel_core.model``, ``tel_core.data``, ``tel_core.config``,
``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``.
"""
