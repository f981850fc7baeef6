"""eager: the attention contract, with the options that change its code path.

That it computes what causal computes is in tests/test_attention_variants.py.
"""

from __future__ import annotations

import pytest

from tel_core.testing import check_attention


@pytest.mark.parametrize(
    "options",
    [None, {"n_kv_heads": 2}, {"n_kv_heads": 1, "window": 3}, {"qk_norm": True}],
)
def test_conforms(registry, options):
    check_attention("eager", options, registry=registry)
