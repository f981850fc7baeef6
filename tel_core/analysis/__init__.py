"""Analysis of finished runs: runs, arms, statistics, fits, tables, plots, the report.

Reads run directories (``metrics.jsonl``, ``config.toml``, ``manifest.json``) and nothing
else, so it works on runs trained on another machine or by another version of tel.

May import: ``tel_core.errors``, ``tel_core.ui``; never training, the model or the
plugins (an import-linter contract in ``pyproject.toml`` says so).
"""
