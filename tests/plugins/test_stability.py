"""stability: spikes against running averages, counted, with their steps as text."""

from __future__ import annotations

import math

import pytest

from tel_core.probes.contract import Update
from tel_core.testing import check_probe
from tel_plugins.probes.stability import Stability, StabilityOptions


@pytest.mark.parametrize(
    "options", [None, {"warmup": 0, "loss_ratio": 1.01, "grad_ratio": 1.01, "summary_every": 1}]
)
def test_conforms(registry, options):
    check_probe("stability", options, registry=registry)


def feed(probe, values, start=1, last=None):
    reports = {}
    for step, (loss, grad, clipped) in enumerate(values, start=start):
        report = probe.after_update(Update(step, loss, grad, 1e-3, clipped, True, step == last))
        if report is not None:
            reports[step] = report
    return reports


def steady(n, loss=2.0, grad=1.0):
    return [(loss, grad, False)] * n


def test_spikes_and_non_finite_steps_are_counted_with_their_steps():
    probe = Stability(StabilityOptions(warmup=5, summary_every=0), ctx=None)
    values = [*steady(10), (2.6, 1.0, False), *steady(3), (2.0, 4.0, True), (math.nan, 1.0, False)]
    values += steady(3)
    reports = feed(probe, values, last=len(values))
    assert sorted(reports) == [11, 15, 16, 19]  # two spikes, a NaN, and the last step
    assert reports[11].texts == {
        "stability/event": "step 11: loss spike: 2.6, 1.30 x its running average 2"
    }
    assert "gradient norm spike: 4, 4.00 x" in reports[15].texts["stability/event"]
    assert "non-finite loss nan" in reports[16].texts["stability/event"]
    final = reports[19].scalars
    assert final["stability/loss_spikes"] == final["stability/grad_spikes"] == 1
    assert final["stability/nonfinite"] == 1 and final["stability/clipped"] == 1
    assert final["stability/clip_rate"] == pytest.approx(1 / 19)
    assert final["stability/loss_avg"] == pytest.approx(2.0)  # the spike never entered it


def test_nothing_counts_during_warmup_and_a_slow_rise_is_no_spike():
    probe = Stability(StabilityOptions(warmup=5, summary_every=10), ctx=None)
    rising = [(2.0 * 1.01**i, 1.0, False) for i in range(30)]
    reports = feed(probe, [(50.0, 50.0, False), *steady(3), *rising])
    assert sorted(reports) == [10, 20, 30]  # summaries only
    assert reports[30].scalars["stability/loss_spikes"] == 0


def test_a_resumed_probe_counts_on(registry):
    values = [*steady(25), (3.0, 1.0, False), *steady(5), (2.0, 9.0, False), *steady(2)]
    straight = Stability(StabilityOptions(), ctx=None)
    expected = feed(straight, values, last=len(values))
    first = Stability(StabilityOptions(), ctx=None)
    feed(first, values[:28])
    second = Stability(StabilityOptions(), ctx=None)
    second.load_state_dict(first.state_dict())
    resumed = feed(second, values[28:], start=29, last=len(values))
    assert {s: r.scalars for s, r in resumed.items()} == {
        s: r.scalars for s, r in expected.items() if s > 28
    }
