"""tel's pytest plugin, loaded by pytest through the ``pytest11`` entry point.

Fixtures for testing tel plugins:

- ``tel_register``: register plugin objects with tel's default registry for one test.
- ``tel_train``: train a tiny model with chosen components for a few steps.

Every pytest run in an environment where tel is installed imports this module, so it
imports nothing heavy (no torch, no plugins) until a fixture is used.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tel_core.testing.tiny import TinyRun


@pytest.fixture
def tel_register() -> Iterator[Callable[..., str]]:
    """``tel_register(plugin, name=None) -> name``: add a plugin for this test only.

    ``plugin`` is any object (a module, a class instance) with ``@tel_core.hookimpl``
    hook functions. It joins ``tel_core.registry.registry.default_registry()``, which ``tel run``,
    ``load_experiment``, ``train_tiny`` and the kit use unless given another registry,
    and leaves it when the test ends. A misspelt hook fails at once.
    """
    from tel_core.registry.registry import default_registry

    registry = default_registry()
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        names.append(registry.add_plugin(plugin, name=name, strict=True))
        return names[-1]

    yield register
    for name in reversed(names):
        registry.remove_plugin(name)


@pytest.fixture
def tel_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., TinyRun]:
    """``tel_train(steps=8, **components) -> TinyRun``: a tiny model trained by the real loop.

    Takes the arguments of ``tel_core.testing.train_tiny``: components by name or table,
    under the keys of ``tel_core.testing.COMPONENT_KEYS``, and ``steps``, ``seed``,
    ``config``, ``registry``; and writes each run, and its token cache,
    under ``tmp_path`` (each run's corpus is new, so a shared cache would only grow).
    """
    from tel_core.testing.tiny import train_tiny

    monkeypatch.setenv("TEL_CACHE_DIR", str(tmp_path / "tel-cache"))

    count = itertools.count()

    def train(**kwargs: Any) -> TinyRun:
        return train_tiny(tmp_path / f"tel-train-{next(count)}", **kwargs)

    return train
