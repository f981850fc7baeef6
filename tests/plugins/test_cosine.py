"""cosine: the schedule contract, warmup, peak and floor."""

import pytest

from tel_core.errors import ConfigError
from tel_core.registry.interfaces import ScheduleContext
from tel_core.testing import check_schedule
from tel_plugins.schedules.cosine import CosineOptions, cosine


@pytest.mark.parametrize(
    "options",
    [None, {"warmup_steps": 0, "min_lr": 0.0}, {"warmup_steps": 500, "decay_steps": 10}],
)
def test_conforms(registry, options):
    check_schedule("cosine", options, registry=registry)


def test_warms_up_peaks_and_decays_to_the_floor():
    lr_at = cosine(CosineOptions(warmup_steps=10, min_lr=1e-4), ScheduleContext(1e-3, 110))
    assert lr_at(0) == pytest.approx(1e-3 / 11)
    assert lr_at(9) == pytest.approx(1e-3 * 10 / 11)
    assert lr_at(10) == pytest.approx(1e-3)
    assert lr_at(60) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(110) == pytest.approx(1e-4)
    values = [lr_at(s) for s in range(10, 111)]
    assert values == sorted(values, reverse=True)


def test_decay_steps_may_differ_from_max_steps():
    lr_at = cosine(
        CosineOptions(warmup_steps=0, min_lr=0.0, decay_steps=50), ScheduleContext(1.0, 100)
    )
    assert lr_at(50) == 0.0 and lr_at(99) == 0.0


def test_warmup_fraction_is_a_share_of_max_steps():
    lr_at = cosine(CosineOptions(warmup_fraction=0.1, min_lr=0.0), ScheduleContext(1.0, 200))
    assert lr_at(19) == pytest.approx(20 / 21) and lr_at(20) == pytest.approx(1.0)
    assert cosine(CosineOptions(), ScheduleContext(1.0, 200))(99) < 1.0  # 100 steps by default


def test_warmup_steps_and_warmup_fraction_together_are_an_error(registry):
    from tel_core.config.loader import options_from_dict
    from tel_core.errors import TelError

    with pytest.raises(TelError, match="set warmup_steps or warmup_fraction, not both"):
        options_from_dict(
            registry.get("schedule", "cosine"), {"warmup_steps": 5, "warmup_fraction": 0.1}
        )


def test_a_floor_above_the_peak_is_refused():
    with pytest.raises(ConfigError, match=r"\[schedule\] min_lr \(0\.01\) is above the peak"):
        cosine(CosineOptions(min_lr=1e-2), ScheduleContext(1e-3, 10))
    flat = cosine(CosineOptions(warmup_steps=0, min_lr=1e-3), ScheduleContext(1e-3, 10))
    assert [flat(s) for s in range(10)] == [1e-3] * 10  # a floor at the peak: constant
