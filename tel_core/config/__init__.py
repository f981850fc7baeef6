"""Experiment files: what an experiment may say, and reading and writing it.

- ``schema``: the frozen attrs classes, one per TOML table (``Experiment``, ``TrainConfig``...);
- ``loader``: TOML, ``extends`` and ``--set`` layers, structured into an ``Experiment``
  with every error naming the file, table and key;
- ``serialise``: an experiment (or any attrs options) as plain data and as TOML;
- ``options``: a component's options class described for people (types, defaults, docs);
- ``listing``: what ``tel plugins`` reports, each component with the table that selects it.

The checks that need a model's shape or the probes' setup run one layer up, where
experiments are loaded for training (``tel_core.train.experiment``).

May import: ``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``.
"""
