"""linear (schedule): the schedule contract; warmup, a straight decay, the floor."""

import itertools

import pytest

from tel_core.registry.interfaces import ScheduleContext
from tel_core.testing import check_schedule
from tel_plugins.schedules.linear import LinearOptions, linear


@pytest.mark.parametrize(
    "options", [None, {"warmup_fraction": 0.1, "min_lr": 1e-5}, {"decay_steps": 50}]
)
def test_conforms(registry, options):
    check_schedule("linear", options, registry=registry)


def test_warms_up_then_falls_in_a_straight_line_to_the_floor():
    lr_at = linear(LinearOptions(warmup_steps=10, min_lr=0.1), ScheduleContext(1.1, 110))
    assert lr_at(0) == pytest.approx(1.1 / 11) and lr_at(10) == pytest.approx(1.1)
    assert lr_at(60) == pytest.approx(0.6)  # half way down
    assert lr_at(110) == pytest.approx(0.1)
    steps = [lr_at(s) for s in range(10, 111)]
    diffs = [b - a for a, b in itertools.pairwise(steps)]
    assert all(d == pytest.approx(-0.01) for d in diffs)


def test_a_floor_above_the_peak_is_refused():
    from tel_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"min_lr \(0\.01\) is above the peak .*linear decay"):
        linear(LinearOptions(min_lr=1e-2), ScheduleContext(1e-3, 10))
