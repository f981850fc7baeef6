"""Generating text from a loaded run: the prompt's ids, then text piece by piece.

The tokens come from ``tel_core.model.sampling`` (temperature, top-k, top-p, the KV cache
and the sliding context); this turns them into text as soon as it is whole, for ``tel
generate`` and ``tel chat``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tel_core.errors import TelError
from tel_core.model.sampling import Sampling, stream
from tel_core.use.load_run import LoadedRun


class TextStream:
    """Turns ids into text piece by piece, holding back what is not yet a whole character.

    A byte-level tokenizer may split a character across tokens; decoding the ids so far
    would show a replacement character that the next token turns into the real one.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.shown = ""

    def push(self, token: int) -> str:
        """The text that ``token`` completes (possibly empty)."""
        self.ids.append(int(token))
        text = self.decode(self.ids).rstrip("\ufffd")
        return self._advance(text)

    def finish(self) -> str:
        """Whatever is left, incomplete characters included."""
        return self._advance(self.decode(self.ids))

    def _advance(self, text: str) -> str:
        if not text.startswith(self.shown):  # decoding changed earlier text: show it later
            return ""
        new, self.shown = text[len(self.shown) :], text
        return new


def prompt_ids(loaded: LoadedRun, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts from the end-of-document token, if any."""
    ids = loaded.encode(prompt)
    if not ids:
        if loaded.tokenizer.eos_id is None:
            raise TelError("the prompt is empty: give some text to continue (--prompt TEXT)")
        ids = [loaded.tokenizer.eos_id]
    return ids


def generate_text(
    loaded: LoadedRun,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator | None = None,
    cache: bool = True,
    write: Callable[[str], None] | None = None,
) -> str:
    """Continue ``prompt`` with a loaded run's model, handing each piece of text to
    ``write`` as soon as it is complete; returns the continuation."""
    ids = torch.tensor([prompt_ids(loaded, prompt)], dtype=torch.long, device=loaded.device)
    text = TextStream(loaded.tokenizer.decode)
    with loaded.precision.autocast():
        for token in stream(loaded.model, ids, max_new_tokens, sampling, generator, cache):
            piece = text.push(int(token[0]))
            if piece and write is not None:
                write(piece)
    rest = text.finish()
    if rest and write is not None:
        write(rest)
    return text.shown


def check_sampling(sampling: Sampling, max_new_tokens: int) -> None:
    """Settings a person typed, refused in one line each."""
    if not sampling.temperature >= 0:
        raise TelError(f"temperature must be 0 (greedy) or more, got {sampling.temperature}")
    if sampling.top_k < 0:
        raise TelError(f"top-k must be 0 (no cut-off) or more, got {sampling.top_k}")
    if not 0 < sampling.top_p <= 1:
        raise TelError(f"top-p must be in (0, 1], got {sampling.top_p}")
    if max_new_tokens < 0:
        raise TelError(f"max-new-tokens must be 0 or more, got {max_new_tokens}")
