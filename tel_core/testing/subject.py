"""The component under test, and how a broken contract is reported.

Every ``check_<kind>`` resolves its argument to a ``Subject`` (the registered component
and its options), then runs named checks inside ``subject.check(...)``. A check that
finds a problem raises ``ConformanceError`` with one message: the component, the check,
and what broke, e.g. ``norm 'scalenorm': zero input: the output is not finite``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

import attrs
import tomli_w

from tel_core.config.loader import options_from_dict
from tel_core.config.options import option_docs
from tel_core.config.serialise import to_dict
from tel_core.errors import TelError
from tel_core.registry.registry import Component, Registry, default_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConformanceError(AssertionError):
    """A component broke the contract of its kind. The message says which check and what."""


class UndocumentedOptionsWarning(UserWarning):
    """Options without a ``#:`` doc: ``tel plugins`` has nothing to show for them."""


class _Broken(Exception):
    """Raised inside a check; ``Subject.check`` turns it into a ConformanceError."""


def fail(message: str) -> NoReturn:
    """Stop the current check: ``message`` says what broke and, where it helps, the fix."""
    raise _Broken(message)


def wrong_type(value: Any, expected: str) -> NoReturn:
    """Stop the current check: the factory built the wrong sort of object."""
    fail(f"the factory returned a value of type {type(value).__name__}; expected {expected}")


@attrs.frozen
class Subject:
    component: Component
    options: Any
    registry: Registry

    @property
    def label(self) -> str:
        return f"{self.component.kind} {self.component.name!r}"

    def build(self, *args: Any) -> Any:
        """Call the registered factory, exactly as the core does: ``factory(options, *args)``."""
        return self.component.factory(self.options, *args)

    def build_a(self, expected: type, description: str, *args: Any) -> Any:
        """``build(*args)``, stopping the check unless it returned an ``expected``."""
        built = self.build(*args)
        if not isinstance(built, expected):
            wrong_type(built, description)
        return built

    @contextlib.contextmanager
    def check(self, what: str) -> Iterator[None]:
        """Run one named check; any failure in it becomes one ConformanceError."""
        try:
            yield
        except _Broken as exc:
            raise ConformanceError(f"{self.label}: {what}: {exc}") from None
        except ConformanceError:
            raise
        except Exception as exc:
            raise ConformanceError(
                f"{self.label}: {what}: raised {type(exc).__name__}: {exc}"
            ) from exc


def subject(
    kind: str,
    component: str | Component,
    options: Any = None,
    registry: Registry | None = None,
) -> Subject:
    """Resolve a component name (or a ``Component``) and its options for checking.

    ``options`` may be None (the options class's defaults), a mapping (structured and
    validated exactly like the component's table in an experiment file) or an instance
    of the component's options class.
    """
    registry = registry or default_registry()
    if isinstance(component, Component):
        if component.kind != kind:
            raise ConformanceError(f"{component.kind} {component.name!r} is not a {kind}")
    else:
        try:
            component = registry.get(kind, component)
        except TelError as exc:
            raise ConformanceError(
                f"{exc} (is your package installed, e.g. with `pip install -e .`, and does it "
                f"list its module under the entry-point group 'tel'?)"
            ) from None
    label = f"{kind} {component.name!r}"
    if options is None:
        try:
            options = component.options()
        except TypeError as exc:
            raise ConformanceError(
                f"{label}: its options class has required options ({exc}); pass options=..."
            ) from None
    elif isinstance(options, Mapping):
        try:
            options = options_from_dict(component, dict(options))
        except TelError as exc:
            raise ConformanceError(f"{label}: {exc}") from None
    elif not isinstance(options, component.options):
        raise ConformanceError(
            f"{label}: options must be a mapping or a {component.options.__name__}, "
            f"got {type(options).__name__}"
        )
    return Subject(component, options, registry)


def build_component(
    kind: str,
    component: str | Component,
    *args: Any,
    options: Any = None,
    registry: Registry | None = None,
) -> Any:
    """A registered component built exactly as the core builds it: ``factory(options, *args)``.

    ``options`` as for the checks (None: the defaults; a mapping, checked like a TOML table;
    or an options instance); e.g. ``build_component("positional", "rope", model_context())``.
    """
    return subject(kind, component, options, registry).build(*args)


def check_model_check(s: Subject, ctx: Any) -> None:
    """The component's own ``check(options, ctx)``, if it has one, accepts the kit's model.

    A check rejects combinations with one line (``ValueError`` or ``ConfigError``); the
    kit builds only what the check accepts, so a rejection here means: pass a ``ctx``
    (or ``dim``) that the component can be built for.
    """
    check = getattr(s.component, "check", None)
    if check is None:
        return
    with s.check("its check(options, ctx) accepts the model"):
        try:
            check(s.options, ctx)
        except (ValueError, TelError) as exc:
            fail(f"it rejects the kit's model ({exc}); pass ctx=model_context(...) it accepts")
        except Exception as exc:
            fail(f"it raised {type(exc).__name__}: {exc}; a check raises ValueError or ConfigError")


def accepts(component: Component, options: Any, ctx: Any) -> bool:
    """Whether ``component``'s check (if any) accepts ``options`` in a model shaped ``ctx``."""
    check = getattr(component, "check", None)
    try:
        if check is not None:
            check(options, ctx)
    except (ValueError, TelError):
        return False
    return True


def partners(
    kind: str, registry: Registry, ctx: Any, names: Iterable[str] | None
) -> Iterator[tuple[str, Component, Any]]:
    """(name, component, built) for the components of ``kind`` to pair a subject with.

    Named ones must build (their errors propagate); with ``names`` None, every registered
    one whose check accepts ``ctx`` and that builds with default options, the others
    skipped with a warning.
    """
    chosen = sorted(registry.components(kind)) if names is None else list(names)
    for name in chosen:
        component = registry.get(kind, name)
        if not accepts(component, component.options(), ctx):
            continue  # the partner's own check rules this model out
        try:
            built = component.factory(component.options(), ctx)
        except Exception as exc:
            if names is not None:
                raise
            warnings.warn(
                f"not pairing with {kind} {name!r}: it does not build with its default "
                f"options ({type(exc).__name__}: {exc})",
                stacklevel=4,
            )
            continue
        yield name, component, built


def check_options(s: Subject) -> None:
    """The options survive the run directory's config.toml, and every option has a doc.

    A run records its resolved experiment as TOML and ``tel run config.toml`` repeats it,
    so options must be TOML values (str, int, float, bool, lists, tables) that read back
    as the same options.
    """
    with s.check("options survive config.toml"):
        data = to_dict(s.options)
        try:
            text = tomli_w.dumps(data)
        except TypeError as exc:
            fail(
                f"{data!r} cannot be written as TOML ({exc}); options must be str, int, "
                f"float, bool, lists or tables"
            )
        again = options_from_dict(s.component, tomllib.loads(text), label="config.toml")
        if again != s.options:
            fail(f"written as {data!r}, they read back as {again!r}, not {s.options!r}")
    docs = option_docs(type(s.options))
    missing = [f.name for f in attrs.fields(type(s.options)) if f.name not in docs]
    if missing:
        warnings.warn(
            f"{s.label}: options without a `#:` doc comment: {', '.join(missing)}",
            UndocumentedOptionsWarning,
            stacklevel=3,
        )
