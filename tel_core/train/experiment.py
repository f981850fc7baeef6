"""Loading an experiment to train it: the config loader's structuring, then the checks.

``tel_core.config.loader`` reads and structures the layers (files, ``extends``,
``--set``); the checks that judge a combination of components need more than the
configuration: the model components' ``check`` sees the model's shape
(``tel_core.model.decoder.check_model``) and a probe's sees the experiment's model on the
meta device (``tel_core.probes.runner.check_probes``). Both run here, at load time, before
any tensor is built, and their errors name the file and table that selected the component.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tel_core.config.loader import Layer, Where, file_layers, override_layers, structure
from tel_core.config.schema import Experiment
from tel_core.model.decoder import check_model
from tel_core.probes.runner import check_probes
from tel_core.registry.registry import Registry, default_registry


def check_experiment(experiment: Experiment, registry: Registry, where: Where) -> None:
    """Run every selected model component's and probe's ``check``: what cannot work
    together fails now, in one line naming the table, not at step 500."""
    check_model(
        experiment.model,
        experiment.data.block_size,
        registry,
        where=lambda kind: where(("model", kind)),
    )
    if experiment.probes:
        check_probes(experiment, registry, lambda i: where(("probes", str(i))))


def load_experiment(
    path: str | Path,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> Experiment:
    """Read an experiment file with its ``extends`` chain and ``--set`` overrides."""
    if registry is None:
        registry = default_registry()
    layers = [*file_layers(Path(path)), *override_layers(overrides)]
    return structure(layers, registry, check_experiment)


def experiment_from_dict(
    data: dict[str, Any], registry: Registry | None = None, label: str = "<dict>"
) -> Experiment:
    """Structure an experiment given as plain data (handy in tests and notebooks)."""
    if registry is None:
        registry = default_registry()
    return structure([Layer(label, data)], registry, check_experiment)
