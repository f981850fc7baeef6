"""tel: a transformer training laboratory.

The core owns the training loop, the model skeleton, configuration and the plugin
registry. Everything that varies between experiments is a plugin. Importing this
package stays cheap (no torch) so that `tel --help` is instant: ``tel_core.load_run``
(``tel_core.use.load_run.load_run``, a trained model from its run directory) is imported on
first use.
"""

from typing import Any

# hookimpl: kept here for plugins written before ``tel_core.plugin``, where plugins import it.
from tel_core.registry.hookspecs import hookimpl
from tel_core.version import __version__

__all__ = ["__version__", "hookimpl", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "load_run":  # torch comes with it: only when asked for
        from tel_core.use.load_run import load_run

        return load_run
    raise AttributeError(f"module 'tel_core' has no attribute {name!r}")
