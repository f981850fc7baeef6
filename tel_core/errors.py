"""Errors meant for people: the CLI prints them as one line and exits with code 2."""


class TelError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown name."""


class ConfigError(TelError):
    """An experiment file (or a --set override) that cannot be used as written."""


class PluginError(TelError):
    """A plugin that failed to load, or two plugins that claim the same name."""
