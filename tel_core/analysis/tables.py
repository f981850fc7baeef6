"""A comparison written out: a terminal table, Markdown to paste, CSV, or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from tel_core.analysis.arms import short_names, show
from tel_core.analysis.compare import ArmSummary, Comparison, to_json

FORMATS = ("table", "markdown", "csv", "json")


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}"


def interval(ci: tuple[float, float] | None, digits: int = 4) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def p_value(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def signed(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def quantity(value: float | None, unit: str = "") -> str:
    """1.2 M, 3.4 G: a count at a glance."""
    if value is None:
        return "-"
    for size, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{seconds:.1f} s"


def _title(c: Comparison) -> str:
    return f"{c.metric} at {c.at}, {len(c.summaries)} arm(s), baseline {c.baseline.label}"


def findings_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """The significance table: one row per arm."""
    names = short_names(c.arms.keys)
    header = [
        "arm",
        *(names[k] for k in c.arms.keys),
        "n",
        "steps",
        "mean",
        "std",
        "95% CI",
        f"Δ vs {c.baseline.label}",
        "95% CI of Δ",
        "p",
        "verdict",
    ]
    rows = []
    for s in c.summaries:
        mark = "" if s.comparable else " (!)"
        rows.append(
            [
                s.label + mark,
                *(show(s.arm.keys[k]) for k in c.arms.keys),
                _count(s),
                s.steps,
                number(s.mean),
                number(s.std),
                interval(s.ci95),
                "" if s is c.baseline else signed(s.difference),
                "" if s is c.baseline else interval(s.difference_ci95),
                p_value(s.p_value),
                s.verdict,
            ]
        )
    return header, rows


def _count(s: ArmSummary) -> str:
    extra = f" (+{s.diverged} diverged)" if s.diverged else ""
    return f"{s.n}{extra}"


COST_HEADER = [
    "arm",
    "params",
    "tokens",
    "FLOPs",
    "wall",
    "tokens/s",
    "peak mem",
    "final val",
    "best val",
    "bits/byte",
    "clipped",
]


def cost_rows(c: Comparison) -> list[list[str]]:
    rows = []
    for s in c.summaries:
        cost = s.cost
        clipped = cost["clipped_fraction"]
        rows.append(
            [
                s.label,
                quantity(cost["params"]),
                quantity(cost["tokens"]),
                quantity(cost["flops"]),
                duration(cost["wall_s"]),
                f"{cost['tokens_per_s']:,.0f}" if cost["tokens_per_s"] is not None else "-",
                f"{cost['peak_mem_mb']:,.0f} MB" if cost["peak_mem_mb"] is not None else "-",
                number(cost["final_val_loss"]),
                number(cost["best_val_loss"]),
                number(cost["bits_per_byte"], 3),
                "-" if clipped is None else f"{100 * clipped:.0f} %",
            ]
        )
    return rows


def _two(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def lr_batch_lines(c: Comparison) -> list[str]:
    """The best learning rate per batch size and the fitted exponent, as sentences."""
    if c.lr_batch is None:
        return []
    lines = [f"best {c.lr_key} per {c.batch_key} (by mean {c.metric}):"]
    for b in c.lr_batch.best:
        fitted = f", parabola vertex {b.fitted_lr:.3g}" if b.fitted_lr is not None else ""
        edge = " (at the grid's edge: the optimum may lie beyond)" if b.at_edge else ""
        lines.append(
            f"  batch {b.batch_size:g}: lr {b.lr:g} ({c.metric} {b.loss:.4f}){fitted}{edge}"
        )
    fit = c.lr_batch.alpha
    if fit is None:
        lines.append("  alpha: needs two batch sizes or more")
    else:
        ci = (
            f", 95% CI [{_two(fit.slope_ci95[0])}, {_two(fit.slope_ci95[1])}]"
            if fit.slope_ci95
            else " (no CI from two points)"
        )
        lines.append(
            f"  best lr ∝ batch_size^alpha: alpha = {_two(fit.slope)}{ci} over {fit.n} batch "
            f"sizes (1 = linear scaling, 0.5 = square root)"
        )
        if any(b.at_edge for b in c.lr_batch.best):
            lines.append(
                "  (a best lr at the grid's edge makes alpha a bound, not an estimate: "
                "widen the grid)"
            )
    return lines


def render_table(c: Comparison, width: int | None = None) -> str:
    """The comparison for a terminal: findings, cost, notes, and the lr-batch fit."""
    out = io.StringIO()
    if width is None:  # a terminal's width; in a pipe or a log file, room for every column
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 240
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    header, rows = findings_rows(c)
    table = Table(title=_title(c), title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 or name == "verdict" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    cost = Table(title="what each arm cost (means over its runs)", title_justify="left")
    for i, name in enumerate(COST_HEADER):
        cost.add_column(name, justify="left" if i == 0 else "right")
    for row in cost_rows(c):
        cost.add_row(*row)
    console.print(cost)
    for line in [*c.notes, *lr_batch_lines(c)]:
        console.print(line, markup=False)
    return out.getvalue()


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    numeric = [all(_numeric(row[i]) for row in rows) for i in range(len(header))]
    align = ["---:" if numeric[i] else "---" for i in range(len(header))]
    return "\n".join([line(header), line(align), *(line(r) for r in rows)])


def _numeric(cell: str) -> bool:
    """Whether a cell reads as a number (right-aligned), e.g. "1.2345", "837 k", "<0.001"."""
    text = cell.strip().lstrip("+-<[").split(" ")[0].rstrip("%,]")
    return not text or text.replace(".", "", 1).replace(",", "").isdigit()


def render_markdown(c: Comparison) -> str:
    """A findings summary to paste into a README: significance, then cost, then notes."""
    header, rows = findings_rows(c)
    parts = [f"**{_title(c)}** (95% intervals, Welch's t-test, alpha = {c.alpha})", ""]
    parts += [_markdown_table(header, rows), "", _markdown_table(COST_HEADER, cost_rows(c))]
    notes = [*c.notes, *lr_batch_lines(c)]
    if notes:
        parts += ["", *(f"- {n.strip()}" for n in notes)]
    return "\n".join(parts) + "\n"


def render_csv(c: Comparison) -> str:
    """One row per arm, every field of the JSON form flattened."""
    records = to_json(c)
    flat = []
    for r in records:
        row: dict[str, Any] = {"arm": r["arm"]}
        row.update({f"key:{k}": v for k, v in r["keys"].items()})
        for field, value in r.items():
            if field in ("arm", "keys"):
                continue
            if field in ("ci95", "difference_ci95"):
                row[f"{field}_low"], row[f"{field}_high"] = value or (None, None)
            elif isinstance(value, list):
                row[field] = " ".join(map(str, value))
            else:
                row[field] = value
        flat.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def render(c: Comparison, fmt: str = "table") -> str:
    if fmt == "markdown":
        return render_markdown(c)
    if fmt == "csv":
        return render_csv(c)
    if fmt == "json":
        return json.dumps(_finite_or_null(to_json(c)), indent=2, default=str) + "\n"
    return render_table(c)


def _finite_or_null(data: Any) -> Any:
    """JSON has no NaN: a diverged value is null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite_or_null(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite_or_null(v) for v in data]
    return data
