"""No positional encoding (NoPE): the causal mask alone tells positions apart.

A causal decoder can still infer where it is, for instance by how much its attention is
spread over the tokens it may see (Haviv et al., 2022; Kazemnejad et al., 2023).
"""

from __future__ import annotations

import attrs

from tel_core.plugin import ModelContext, Positional, hookimpl


@attrs.frozen
class NoPEOptions:
    pass


class NoPE(Positional):
    """No positional information at all: only the causal mask orders the tokens."""

    def __init__(self, options: NoPEOptions, ctx: ModelContext) -> None:
        super().__init__()


@hookimpl
def register_positional(register):
    register("nope", NoPE, options=NoPEOptions)
