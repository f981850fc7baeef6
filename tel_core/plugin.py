"""tel's public API for plugin authors: everything a component needs, from one import.

    from tel_core.plugin import ModelContext, Positional, hookimpl

    @hookimpl
    def register_positional(register):
        register("nope", lambda options, ctx: Positional())

The names below are the documented, stable surface; every other module of ``tel_core`` is
internal and may move between releases (the built-in plugins in ``tel_plugins`` import
nothing else, which a test checks). Tests use ``tel_core.testing``, the conformance kit.

- Hooks: ``hookimpl`` marks a hook function; ``Register`` is the ``register`` callback's type.
  The hooks and each factory's contract: ``tel_core.registry.hookspecs``.
- Options: ``NoOptions`` (a component that takes none), ``ProbeOptions`` (every probe's
  base), ``options_from_dict`` (options from plain data, checked like a TOML table) and
  ``describe_options`` (each field's type, default and ``#:`` doc, as ``tel plugins`` shows).
- Contexts a factory receives: ``DataContext``, ``ModelContext``, ``ScheduleContext``,
  ``LoggerContext``, ``OptimumContext``, ``ProbeContext`` (with its ``World``).
- Interfaces: ``Dataset`` (``Document``, ``Split``, ``parts``, ``document_text``,
  ``Optimum``), ``Tokenizer``, ``Logger``, ``ParameterGroups`` (what an optimizer factory gets).
- Errors a plugin raises: ``TelError`` (a user's mistake, one line), ``ConfigError`` (an
  option that cannot work), ``PluginError`` (a plugin's own bug).
- Torch building blocks: ``Positional``, ``Attention``, ``mark_residual_projection``,
  ``mark_attention``, ``record_attention``; ``IGNORE_INDEX`` marks padded targets.
- The KV cache (generation): ``KVCache``, ``LayerCache`` and ``embed_at``, ``rotate_at``,
  ``score_bias_at``, which ask any ``Positional`` at an offset.
- Probes: ``Probe``, ``ProbeSetup`` (what a probe's ``check`` sees), ``Update``,
  ``EvalBatch``, ``Report``; media: ``Histogram``, ``check_image``, ``png_bytes``.
- Content digests for a dataset's or tokenizer's ``fingerprint()``: ``files_digest``.
- Output: ``console`` and ``info`` (the terminal tel prints to), ``json_line``,
  ``write_json_line`` and ``truncate_metrics`` (JSON lines, as metrics.jsonl holds them).
"""

from tel_core.config.loader import options_from_dict
from tel_core.config.options import describe_options
from tel_core.data.batching import IGNORE_INDEX
from tel_core.data.fingerprint import files_digest
from tel_core.errors import ConfigError, PluginError, TelError
from tel_core.model.kv_cache import KVCache, LayerCache, embed_at, rotate_at, score_bias_at
from tel_core.model.nn import (
    Attention,
    Positional,
    mark_attention,
    mark_residual_projection,
    record_attention,
)
from tel_core.probes.contract import (
    EvalBatch,
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeSetup,
    Report,
    Update,
    World,
)
from tel_core.registry.hookspecs import Register, hookimpl
from tel_core.registry.interfaces import (
    DataContext,
    Dataset,
    Document,
    Logger,
    LoggerContext,
    ModelContext,
    Optimum,
    OptimumContext,
    ParameterGroups,
    ScheduleContext,
    Split,
    Tokenizer,
    document_text,
    parts,
)
from tel_core.registry.media import Histogram, check_image, png_bytes
from tel_core.registry.registry import NoOptions
from tel_core.ui import console, info, json_line, truncate_metrics, write_json_line

__all__ = [
    "IGNORE_INDEX",
    "Attention",
    "ConfigError",
    "DataContext",
    "Dataset",
    "Document",
    "EvalBatch",
    "Histogram",
    "KVCache",
    "LayerCache",
    "Logger",
    "LoggerContext",
    "ModelContext",
    "NoOptions",
    "Optimum",
    "OptimumContext",
    "ParameterGroups",
    "PluginError",
    "Positional",
    "Probe",
    "ProbeContext",
    "ProbeOptions",
    "ProbeSetup",
    "Register",
    "Report",
    "ScheduleContext",
    "Split",
    "TelError",
    "Tokenizer",
    "Update",
    "World",
    "check_image",
    "console",
    "describe_options",
    "document_text",
    "embed_at",
    "files_digest",
    "hookimpl",
    "info",
    "json_line",
    "mark_attention",
    "mark_residual_projection",
    "options_from_dict",
    "parts",
    "png_bytes",
    "record_attention",
    "rotate_at",
    "score_bias_at",
    "truncate_metrics",
    "write_json_line",
]
