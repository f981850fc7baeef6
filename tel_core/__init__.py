"""tel: a transformer training laboratory.

The core owns the training loop, the model skeleton, configuration and the plugin
registry. Everything that varies between experiments is a plugin. Importing this
package stays cheap (no torch) so that `tel --help` is instant: ``tel_core.load_run``
(``tel_core.loading.load_run``, a trained model from its run directory) is imported on
first use.
"""

from typing import Any

import pluggy

__version__ = "0.1.0"

#: Marks a function in a plugin module as an implementation of a tel hook.
hookimpl = pluggy.HookimplMarker("tel")

__all__ = ["__version__", "hookimpl", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "load_run":  # torch comes with it: only when asked for
        from tel_core.loading import load_run

        return load_run
    raise AttributeError(f"module 'tel_core' has no attribute {name!r}")
