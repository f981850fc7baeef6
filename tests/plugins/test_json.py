"""json: the logger contract, to standard output and to a file."""

import json

import pytest

from tel_core.registry.interfaces import LoggerContext
from tel_core.testing import check_logger
from tel_plugins.loggers.json_lines import JsonLogger, JsonOptions


@pytest.mark.parametrize("options", [None, {"path": "logs/metrics.jsonl"}, {"text": False}])
def test_conforms(registry, options):
    check_logger("json", options, registry=registry)


def test_writes_one_object_per_line(tmp_path):
    ctx = LoggerContext(tmp_path, "t", max_steps=4, start_step=0, config={})
    logger = JsonLogger(JsonOptions(path="log.jsonl"), ctx)
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
