"""wsd: the schedule contract; warmup, a hold at the peak, a decay over the last part."""

import pytest

from tel_core.registry.interfaces import ScheduleContext
from tel_core.testing import check_schedule
from tel_plugins.schedules.wsd import WsdOptions, wsd


@pytest.mark.parametrize(
    "options",
    [
        None,
        {"warmup_fraction": 0.05, "decay_fraction": 0.1, "decay_shape": "sqrt"},
        {"warmup_steps": 10, "decay_shape": "cosine", "min_lr": 1e-5},
        {"decay_fraction": 1.0},
    ],
)
def test_conforms(registry, options):
    check_schedule("wsd", options, registry=registry)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
def test_warms_up_holds_the_peak_and_decays_over_the_last_fifth(shape):
    options = WsdOptions(warmup_fraction=0.1, decay_fraction=0.2, decay_shape=shape, min_lr=0.01)
    lr_at = wsd(options, ScheduleContext(1.0, 100))
    assert [lr_at(s) for s in range(10)] == pytest.approx([(s + 1) / 11 for s in range(10)])
    assert all(lr_at(s) == 1.0 for s in range(10, 80))  # the stable phase
    decay = [lr_at(s) for s in range(80, 100)]
    assert decay == sorted(decay, reverse=True) and decay[0] < 1.0
    assert lr_at(99) == pytest.approx(0.01)  # the last update at the floor


def test_the_shapes_differ_half_way_down():
    half = {
        shape: wsd(WsdOptions(decay_fraction=1.0, decay_shape=shape), ScheduleContext(1.0, 100))(49)
        for shape in ("linear", "cosine", "sqrt")
    }
    assert half["linear"] == pytest.approx(0.5)
    assert half["cosine"] == pytest.approx(0.5)
    assert half["sqrt"] == pytest.approx(1 - 0.5**0.5)


def test_a_floor_above_the_peak_is_refused():
    from tel_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"min_lr \(0\.01\) is above the peak .*decay would"):
        wsd(WsdOptions(min_lr=1e-2), ScheduleContext(1e-3, 10))
