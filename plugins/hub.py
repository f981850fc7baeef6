"""What the plugins that reach the Hugging Face Hub (``bpe``, ``hf``) share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def first_line(exc: BaseException) -> str:
    """An error's first line: a third-party library's message cut to what tel shows."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Keep huggingface_hub's retry warnings off the terminal: tel says it in one line."""
    from huggingface_hub.utils import logging

    logger = logging.get_logger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
