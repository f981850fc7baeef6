"""tel's conformance kit: checks a plugin author calls from the plugin's own tests.

    from tel_core.testing import check_norm

    def test_scalenorm_keeps_the_norm_contract():
        check_norm("scalenorm")

There is one ``check_<kind>`` per hook in ``tel_core.registry.hookspecs``. Each takes a
component's registered name (or a ``Component``), optional options (None for the
defaults, a dict checked like a TOML table, or an options instance) and an optional
registry (default: every installed plugin), builds the component from its registered
factory exactly as the core does, and asserts the contract of its kind. A broken
contract raises ``ConformanceError`` (an ``AssertionError``) whose message names the
component, the check and what broke.

``build_component(kind, name, *args)`` builds a registered component as the core does,
for a plugin's own tests. ``train_tiny`` trains a tiny model with chosen components for a
few steps. Under pytest, tel's plugin also offers the fixtures ``tel_register`` and
``tel_train`` (see ``tel_core.pytest_plugin``).
"""

from tel_core.testing.attention import check_attention
from tel_core.testing.layers import check_ffn, check_norm
from tel_core.testing.loggers import LOOP_METRICS, check_logger
from tel_core.testing.optim import check_optimizer, check_schedule
from tel_core.testing.positional import check_positional
from tel_core.testing.probes import check_probe
from tel_core.testing.subject import (
    ConformanceError,
    UndocumentedOptionsWarning,
    build_component,
    check_options,
)
from tel_core.testing.tensors import model_context
from tel_core.testing.text import SAMPLE_TEXTS, check_dataset, check_tokenizer
from tel_core.testing.tiny import COMPONENT_KEYS, TinyRun, train_tiny

#: The check for each kind of component (the keys of ``tel_core.registry.registry.KINDS``).
CHECKS = {
    "dataset": check_dataset,
    "tokenizer": check_tokenizer,
    "attention": check_attention,
    "positional": check_positional,
    "norm": check_norm,
    "ffn": check_ffn,
    "optimizer": check_optimizer,
    "schedule": check_schedule,
    "logger": check_logger,
    "probe": check_probe,
}

__all__ = [
    "CHECKS",
    "COMPONENT_KEYS",
    "LOOP_METRICS",
    "SAMPLE_TEXTS",
    "ConformanceError",
    "TinyRun",
    "UndocumentedOptionsWarning",
    "build_component",
    "check_attention",
    "check_dataset",
    "check_ffn",
    "check_logger",
    "check_norm",
    "check_optimizer",
    "check_options",
    "check_positional",
    "check_probe",
    "check_schedule",
    "check_tokenizer",
    "model_context",
    "train_tiny",
]
