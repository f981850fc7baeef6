"""Training: one experiment, from its components to its run directory.

- ``loop``: the ``Trainer`` (building, ``fit``, ``train_step``, accumulation) and ``run``;
- ``run_dir``: the run directory's files, manifest and metrics.jsonl;
- ``checkpoint``: checkpoint files, written atomically, checked before a resume;
- ``mfu``: the device's peak FLOPs; ``scoring``: loss, accuracy and bits per byte;
- ``loss``, ``precision``, ``distributed``, ``device``, ``rng``, ``stopping``: one concern each;
- ``experiment``: loading an experiment with the checks that need a model or probes.

May import: ``tel_core.probes``, ``tel_core.model``, ``tel_core.data``, ``tel_core.config``,
``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``, ``tel_core.version``.
"""
