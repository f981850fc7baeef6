"""tel's version: read by packaging (pyproject.toml), the run manifest and ``tel --version``."""

__version__ = "0.1.0"
