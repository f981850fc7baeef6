"""Errors meant for people: the CLI prints them as one line and exits with code 2."""

import importlib.util


class TelError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown name."""


class ConfigError(TelError):
    """An experiment file (or a --set override) that cannot be used as written."""


class PluginError(TelError):
    """A plugin that failed to load, or two plugins that claim the same name."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """Another library's error cut to one short line: its type and the first sentence of its
    first line (torch's loader, for one, explains itself over several paragraphs).

    Whoever raises a ``TelError`` with it adds what tel was doing and with which file, and
    chains the original (``raise ... from exc``) so that ``--debug`` shows all of it.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:  # "Error(s) in loading state_dict for X:"
        text = f"{text} {lines[1]}"
    # The first sentence: up to ". " after a word, so "e.g. x" or "1.5" do not end it.
    for i in range(len(text) - 1):
        if text[i] == "." and text[i + 1] == " " and i > 2 and text[i - 1].isalnum():
            text = text[:i]
            break
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def require(module: str, what: str, extra: str = "hf") -> None:
    """One line saying which extra to install when ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise TelError(f"{what} needs {module}: pip install 'tel[{extra}]'")
