import json

from tel_core.interfaces import LoggerContext
from tel_plugins.loggers.console import ConsoleLogger, ConsoleOptions
from tel_plugins.loggers.json_lines import JsonLogger, JsonOptions


def ctx(tmp_path):
    return LoggerContext(tmp_path, "t", max_steps=4, start_step=0, config={})


def test_json_logger_writes_one_object_per_line(tmp_path):
    logger = JsonLogger(JsonOptions(path="log.jsonl"), ctx(tmp_path))
    logger.log(1, {"train/loss": 2.5, "train/tokens": 64})
    logger.log(2, {"val/loss": float("nan")})
    logger.log_text(2, "sample", "def f():")
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == [
        {"step": 1, "train/loss": 2.5, "train/tokens": 64},
        {"step": 2, "val/loss": None},
        {"step": 2, "text/sample": "def f():"},
    ]


def test_console_logger_prints_progress_without_a_terminal(tmp_path, capsys):
    logger = ConsoleLogger(ConsoleOptions(every=2), ctx(tmp_path))
    for step in range(1, 5):
        logger.log(step, {"train/loss": 1.0 / step, "train/lr": 1e-3, "train/tokens_per_s": 1e4})
    logger.log(4, {"val/loss": 0.5, "val/ppl": 1.65})
    logger.log_text(4, "sample", "[bold]not markup[/bold]")
    logger.close()
    out = capsys.readouterr().out
    assert "step 2/4 │ loss 0.5000" in out and "step 4/4" in out and "step 1/4" not in out
    assert "val loss 0.5000" in out
    assert "[bold]not markup[/bold]" in out
