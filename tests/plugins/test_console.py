"""console: the logger contract, and its plain lines without a terminal."""

import pytest

from tel_core.registry.interfaces import LoggerContext
from tel_core.testing import check_logger
from tel_plugins.loggers.console import ConsoleLogger, ConsoleOptions


@pytest.mark.parametrize("options", [None, {"every": 1}])
def test_conforms(registry, options):
    check_logger("console", options, registry=registry)


def test_prints_progress_without_a_terminal(tmp_path, capsys):
    ctx = LoggerContext(tmp_path, "t", max_steps=4, start_step=0, config={})
    logger = ConsoleLogger(ConsoleOptions(every=2), ctx)
    for step in range(1, 5):
        metrics = {"train/loss": 1.0 / step, "train/lr": 1e-3, "train/tokens_per_s": 1e4}
        logger.log(step, {**metrics, "train/mfu": 0.4567})
    logger.log(4, {"val/loss": 0.5, "val/ppl": 1.65})
    logger.log_text(4, "sample", "[bold]not markup[/bold]")
    logger.close()
    out = capsys.readouterr().out
    assert "step 2/4 │ loss 0.5000" in out and "step 4/4" in out and "step 1/4" not in out
    assert "10,000 tok/s │ MFU 45.7%" in out
    assert "val loss 0.5000" in out
    assert "[bold]not markup[/bold]" in out
