"""constant: the schedule contract, with and without warmup."""

import pytest

from tel_core.registry.interfaces import ScheduleContext
from tel_core.testing import check_schedule
from tel_plugins.schedules.constant import ConstantOptions, constant


@pytest.mark.parametrize("options", [None, {"warmup_steps": 3}, {"warmup_fraction": 0.25}])
def test_conforms(registry, options):
    check_schedule("constant", options, registry=registry)


def test_with_and_without_warmup():
    assert constant(ConstantOptions(), ScheduleContext(0.5, 10))(0) == 0.5
    warm = constant(ConstantOptions(warmup_steps=3), ScheduleContext(0.5, 10))
    assert [warm(s) for s in range(5)] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5])


def test_warmup_fraction():
    warm = constant(ConstantOptions(warmup_fraction=0.3), ScheduleContext(0.5, 10))
    assert [warm(s) for s in range(5)] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5])
