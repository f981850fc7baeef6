"""The plugin registry: every component tel can build, found through entry points.

Entry points in the group ``tel`` are loaded one at a time, so a plugin that fails to
import is recorded with its error and breaks nothing else (``TEL_STRICT_PLUGINS=1`` makes
it fatal). Each loaded plugin registers components through the hooks in
``tel_core.registry.hookspecs``; the built-ins in ``tel_plugins`` take the very same path.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from tel_core.errors import ConfigError, PluginError, one_line
from tel_core.registry import hookspecs

ENTRY_POINT_GROUP = "tel"

#: Every kind of component, and the hook that registers it.
KINDS: dict[str, str] = {
    "dataset": "register_datasets",
    "tokenizer": "register_tokenizers",
    "attention": "register_attention",
    "positional": "register_positional",
    "norm": "register_norms",
    "ffn": "register_ffn",
    "optimizer": "register_optimizers",
    "schedule": "register_schedules",
    "logger": "register_loggers",
    "probe": "register_probes",
}

#: The kinds built with a ``ModelContext``: the only ones whose ``check`` the core runs.
MODEL_KINDS = ("attention", "positional", "norm", "ffn")
#: The kinds that may register a ``check``: model components, and probes (whose check
#: receives a ``tel_core.plugin.ProbeSetup``).
CHECKED_KINDS = (*MODEL_KINDS, "probe")


@attrs.frozen
class NoOptions:
    """The options class of a component that takes none."""


@attrs.frozen
class Source:
    """Where a plugin came from: its name, module and distribution."""

    plugin: str
    module: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"{self.plugin} ({self.module}, {dist})"


@attrs.frozen
class Component:
    """One registered component: a name, a factory, the options class it takes, and an
    optional ``check(options, ctx)`` that rejects impossible combinations before anything
    is built (see ``tel_core.registry.hookspecs``)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type
    source: Source
    check: Callable[[Any, Any], None] | None = None

    @property
    def doc(self) -> str:
        """The first sentence of the factory's docstring (``tel plugins``' one-line summary)."""
        return first_sentence(self.factory.__doc__ or "")


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring: its first paragraph, joined into one line, up to
    the first full stop (or ! or ?) that a capital letter follows. A stop inside the
    sentence ("e.g. the", "1.5", "x.toml") does not end it."""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
    for i, char in enumerate(text):
        ends = i + 1 == len(text) or (text[i + 1] == " " and text[i + 2 : i + 3].isupper())
        if char in ".!?" and ends:
            return text[: i + 1]
    return text


@attrs.frozen
class BrokenPlugin:
    plugin: str
    module: str
    error: str


class Registry:
    """Plugins, and the components they register, by kind and name."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager("tel")
        self._pm.add_hookspecs(hookspecs)
        self._sources: dict[str, Source] = {}
        self._load_errors: list[BrokenPlugin] = []
        self._disabled: list[Source] = []
        self._disabled_unknown: list[str] = []  # names to disable that no entry point has
        self._hook_errors: list[BrokenPlugin] = []
        self._collected: dict[str, dict[str, Component]] | None = None
        self._conflicts: dict[tuple[str, str], list[Source]] = {}
        #: Whether a hook that raises, or a name registered twice, is fatal at once
        #: (``TEL_STRICT_PLUGINS=1``; ``load_entry_points(strict=...)`` sets it).
        self.strict = strict_plugins()

    # -- plugins -------------------------------------------------------------

    def load_entry_points(
        self,
        group: str = ENTRY_POINT_GROUP,
        *,
        strict: bool = False,
        disabled: Iterable[str] = (),
    ) -> None:
        """Load every entry point of ``group``, each on its own, recording failures."""
        self.strict = strict
        disabled = set(disabled)
        entry_points = sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)
        self._disabled_unknown = sorted(disabled - {ep.name for ep in entry_points})
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            source = Source(
                plugin=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            if ep.name in disabled:
                self._pm.set_blocked(ep.name)
                self._disabled.append(source)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure must not take tel down
                self._record_broken(source, one_line(exc, limit=300), strict)
                continue
            self.add_plugin(plugin, name=ep.name, source=source, strict=strict)

    def add_plugin(
        self,
        plugin: object,
        name: str | None = None,
        *,
        source: Source | None = None,
        strict: bool = True,
    ) -> str:
        """Register a plugin object (a module or any object with hook functions)."""
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        module = getattr(plugin, "__name__", type(plugin).__module__)
        source = source or Source(plugin=name, module=module)
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()  # catches misspelt hook names such as register_atention
        except Exception as exc:
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._record_broken(source, self._invalid_hooks(plugin) or one_line(exc), strict)
            return name
        self._sources[name] = source
        self._collected = None
        return name

    def _invalid_hooks(self, plugin: object) -> str | None:
        """What is wrong with a plugin's hook functions, in one line, if anything."""
        hooks = list(KINDS.values())
        for attr in dir(plugin):
            if self._pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            if attr not in hooks:
                close = difflib.get_close_matches(attr, hooks, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"tel's hooks: {', '.join(hooks)}"
                )
                return f"unknown hook {attr!r}; {hint}"
            function = getattr(plugin, attr)
            wrong = [p for p in inspect.signature(function).parameters if p != "register"]
            if wrong:
                return f"hook {attr!r} takes {', '.join(wrong)}, but tel passes only register"
        return None

    def remove_plugin(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._sources.pop(name, None)
        self._collected = None

    def _record_broken(self, source: Source, error: str, strict: bool) -> None:
        if strict:
            raise PluginError(f"plugin {source.plugin!r} ({source.module}) failed to load: {error}")
        self._load_errors.append(BrokenPlugin(source.plugin, source.module, error))

    @property
    def disabled(self) -> list[Source]:
        """Entry points that were not loaded because they were disabled by name."""
        return list(self._disabled)

    @property
    def disabled_unknown(self) -> list[str]:
        """Names in ``disabled`` that match no entry point (a typo disables nothing)."""
        return list(self._disabled_unknown)

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugins that failed to import, or whose hooks raised, with their errors."""
        self._collect()
        return self._load_errors + self._hook_errors

    # -- components ----------------------------------------------------------

    def components(self, kind: str) -> dict[str, Component]:
        """Every component of ``kind``, by name."""
        if kind not in KINDS:
            raise PluginError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        return self._collect()[kind]

    @property
    def conflicts(self) -> dict[tuple[str, str], list[Source]]:
        """(kind, name) pairs registered by more than one plugin, with every source."""
        self._collect()
        return dict(self._conflicts)

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """The component ``name`` of ``kind``, or an error that says what would be valid."""
        available = self.components(kind)
        at = f" in {where}" if where else ""
        if (kind, name) in self._conflicts:
            sources = " and by ".join(str(s) for s in self._conflicts[kind, name])
            raise PluginError(
                f"{kind} {name!r}{at} is registered twice: by {sources}; "
                f"uninstall one or block it with TEL_DISABLED_PLUGINS"
            )
        if name in available:
            return available[name]
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        message = f"unknown {kind} {name!r}{at}{hint} available: {', '.join(sorted(available))}"
        if broken := self.broken:
            failed = "; ".join(f"{b.plugin}: {b.error}" for b in broken)
            message += f" (plugins that failed to load: {failed})"
        if self._disabled:
            off = ", ".join(s.plugin for s in self._disabled)
            message += f" (disabled by TEL_DISABLED_PLUGINS: {off})"
        raise ConfigError(message)

    def check(self, kind: str, selection: Any, ctx: Any) -> None:
        """Run the selected component's ``check(options, ctx)``, if it has one.

        Raises ``ConfigError`` with the check's message; the caller adds where the
        component was configured.
        """
        check = self.get(kind, selection.name).check
        if check is None:
            return
        try:
            check(selection.options, ctx)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(str(exc)) from None

    def build(self, kind: str, selection: Any, *args: Any) -> Any:
        """Call the factory of a selected component with its options and ``args``."""
        return self.get(kind, selection.name).factory(selection.options, *args)

    def _collect(self) -> dict[str, dict[str, Component]]:
        if self._collected is not None:
            return self._collected
        collected: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self._conflicts = {}
        self._hook_errors = []
        for kind, hook_name in KINDS.items():
            # Calling each implementation on its own tells us which plugin registered
            # what, so that a name clash can name both sources.
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                source = self._sources[impl.plugin_name]
                register = functools.partial(self._register, collected[kind], kind, source)
                try:
                    impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
                except Exception as exc:
                    error = f"{hook_name}: {one_line(exc, limit=300)}"
                    if self.strict:
                        raise PluginError(f"plugin {source.plugin!r} failed: {error}") from exc
                    self._hook_errors.append(BrokenPlugin(source.plugin, source.module, error))
        self._collected = collected
        if self.strict and self._conflicts:
            (kind, name), sources = next(iter(self._conflicts.items()))
            raise PluginError(
                f"{kind} {name!r} is registered twice: by " + " and by ".join(map(str, sources))
            )
        return collected

    def _register(
        self,
        into: dict[str, Component],
        kind: str,
        source: Source,
        name: str,
        factory: Callable[..., Any],
        options: type | None = None,
        check: Callable[[Any, Any], None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{source}: a {kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise PluginError(f"{source}: the factory of {kind} {name!r} is not callable")
        options = NoOptions if options is None else options
        if not attrs.has(options):
            raise PluginError(f"{source}: the options of {kind} {name!r} must be an attrs class")
        if check is not None and not callable(check):
            raise PluginError(f"{source}: the check of {kind} {name!r} is not callable")
        if check is not None and kind not in CHECKED_KINDS:
            raise PluginError(
                f"{source}: {kind} {name!r} has a check, but checks run only for "
                f"{', '.join(CHECKED_KINDS)}"
            )
        component = Component(kind, name, factory, options, source, check)
        if name in into:
            clash = self._conflicts.setdefault((kind, name), [into[name].source])
            clash.append(source)
            return
        into[name] = component


def strict_plugins() -> bool:
    return os.environ.get("TEL_STRICT_PLUGINS", "") not in ("", "0")


def disabled_plugins() -> list[str]:
    return [n.strip() for n in os.environ.get("TEL_DISABLED_PLUGINS", "").split(",") if n.strip()]


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of every installed plugin, loaded once per process."""
    registry = Registry()
    registry.load_entry_points(strict=strict_plugins(), disabled=disabled_plugins())
    return registry
