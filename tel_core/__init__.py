"""tel: a transformer training laboratory.

The core owns the training loop, the model skeleton, configuration and the plugin
registry. Everything that varies between experiments is a plugin. Importing this
package stays cheap (no torch) so that `tel --help` is instant.
"""

import pluggy

__version__ = "0.1.0"

#: Marks a function in a plugin module as an implementation of a tel hook.
hookimpl = pluggy.HookimplMarker("tel")

__all__ = ["__version__", "hookimpl"]
