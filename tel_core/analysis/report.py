"""``tel report``: one self-contained HTML page of a set of runs.

The comparison table, the config diff, interactive plots of every curve (plotly, its
script embedded: the page opens without a network), the final metric against the
learning rate for a learning-rate sweep, each arm's generated samples side by side, and
whatever the runs' probes recorded (scalars as curves, images from ``probes/``). Runs
still training are drawn as far as they have come; ``watch`` rewrites the page until
they finish, and the page reloads itself meanwhile.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tel_core.analysis.arms import MISSING, show
from tel_core.analysis.compare import Comparison
from tel_core.analysis.curves import (
    DEFAULT_Y,
    SMOOTHED,
    X_AXES,
    Curve,
    arm_curve,
    probe_keys,
)
from tel_core.analysis.plots import lr_sweep_keys
from tel_core.analysis.runs import Run
from tel_core.analysis.tables import COST_HEADER, cost_rows, findings_rows, lr_batch_lines
from tel_core.errors import TelError

#: A curve keeps at most this many points in the page (a long run is thinned evenly).
MAX_POINTS = 500
#: Probe curves drawn; the rest are listed by name.
MAX_PROBE_PLOTS = 24
#: Probe images shown per arm (the newest).
MAX_IMAGES = 8
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
td.differs { background: #fff6d6; }
.note { background: #fff3f3; border-left: 4px solid #d62728; padding: 0.4em 0.8em; }
.info { color: #555; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 1em; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 1em; }
pre { background: #f8f8f8; padding: 0.6em; white-space: pre-wrap; font-size: 0.8em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        import plotly.offline
    except ImportError:
        raise TelError("tel report needs plotly: pip install 'tel[lab]'") from None
    return go, plotly.offline


def _thin(x: np.ndarray, *ys: np.ndarray) -> tuple[list, ...]:
    """At most MAX_POINTS evenly spaced points (the last kept), as lists for JSON."""
    index = np.arange(len(x))
    if len(x) > MAX_POINTS:
        index = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int))
    return tuple(_clean(a[index]) for a in (x, *ys))


def _clean(values: np.ndarray) -> list:
    # Six significant digits: a curve's JSON at half the size, and more than a screen shows.
    return [float(f"{v:.6g}") if np.isfinite(v) else None for v in values]


def _band_polygon(curve: Curve) -> tuple[list, list]:
    """The band as one closed shape: along ``high``, back along ``low``."""
    x, low, high = _thin(curve.x, curve.low, curve.high)
    keep = [i for i in range(len(x)) if low[i] is not None and high[i] is not None]
    xs = [x[i] for i in keep]
    return xs + xs[::-1], [high[i] for i in keep] + [low[i] for i in keep][::-1]


def curve_figure(go: Any, c: Comparison, key: str, axes: Sequence[str], smoothing: float) -> Any:
    """One metric, an arm a mean line and a band, with buttons to change the x axis."""
    smooth = smoothing if key in SMOOTHED else 0.0
    means: list[np.ndarray] = []
    per_axis: dict[str, list[tuple[list, list]]] = {}
    traces: list[Any] = []
    for axis in axes:
        data = []
        for i, s in enumerate(c.summaries):
            curve = arm_curve(s.arm, key, axis, smooth)
            if curve is None:
                data += [([], []), ([], [])]
                if axis == axes[0]:
                    traces += [None, None]
                continue
            band = _band_polygon(curve)
            x, mean = _thin(curve.x, curve.mean)
            means.append(curve.mean[np.isfinite(curve.mean)])
            data += [band, (x, mean)]
            if axis == axes[0]:
                color = COLORS[i % len(COLORS)]
                name = s.label + (f" (n={curve.runs})" if curve.runs > 1 else "")
                traces.append(
                    go.Scatter(
                        x=band[0],
                        y=band[1],
                        mode="lines",
                        fill="toself",
                        fillcolor=_fade(color),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=s.label,
                        name=f"{s.label} 95% band",
                    )
                )
                traces.append(
                    go.Scatter(
                        x=x,
                        y=mean,
                        mode="lines",
                        name=name,
                        legendgroup=s.label,
                        line={"color": color, "width": 1.6},
                    )
                )
        per_axis[axis] = data
    kept = [i for i, t in enumerate(traces) if t is not None]
    if not kept:
        return None
    figure = go.Figure([traces[i] for i in kept])
    buttons = [
        {
            "label": axis,
            "method": "update",
            "args": [
                {
                    "x": [per_axis[axis][i][0] for i in kept],
                    "y": [per_axis[axis][i][1] for i in kept],
                },
                {"xaxis.title.text": X_AXES[axis]},
            ],
        }
        for axis in axes
    ]
    title = key + (f" (EMA {smooth:g})" if smooth else "")
    figure.update_layout(
        title=title,
        xaxis_title=X_AXES[axes[0]],
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"font": {"size": 10}, "orientation": "h", "y": -0.2},
        updatemenus=[
            {
                "buttons": buttons,
                "direction": "right",
                "x": 1,
                "xanchor": "right",
                "y": 1.15,
                "type": "buttons",
                "showactive": True,
            }
        ],
    )
    _fit_to_means(figure, np.concatenate(means), log=key in ("train/loss", "val/loss"))
    return figure


def _fit_to_means(figure: Any, means: np.ndarray, log: bool) -> None:
    """The y range of the mean curves: a wide band (two seeds: t = 12.7) may leave it."""
    if len(means) == 0:
        return
    low, high = float(means.min()), float(means.max())
    if log and low > 0:
        figure.update_yaxes(type="log", range=[np.log10(low / 1.15), np.log10(high * 1.15)])
    else:
        pad = 0.08 * (high - low) or 0.1 * abs(high) or 1.0
        figure.update_yaxes(range=[low - pad, high + pad])


def _fade(color: str) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.2)"


def lr_figure(go: Any, c: Comparison) -> Any:
    """The final metric against the learning rate, a line per batch size, best marked."""
    keys = lr_sweep_keys(c)
    if keys is None:
        return None
    lr_key, batch_key = keys
    lines: dict[Any, list[tuple[float, float, tuple | None]]] = {}
    for s in c.summaries:
        if s.mean is not None:
            batch = s.arm.keys[batch_key] if batch_key else None
            lines.setdefault(batch, []).append((s.arm.keys[lr_key], s.mean, s.ci95))
    figure = go.Figure()
    for i, (batch, points) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        points.sort()
        color = COLORS[i % len(COLORS)]
        lrs, means = [p[0] for p in points], [p[1] for p in points]
        above = [p[2][1] - p[1] if p[2] else 0 for p in points]
        below = [p[1] - p[2][0] if p[2] else 0 for p in points]
        name = f"batch {batch:g}" if batch is not None else c.metric
        figure.add_trace(
            go.Scatter(
                x=lrs,
                y=means,
                mode="lines+markers",
                name=name,
                line={"color": color},
                error_y={"type": "data", "array": above, "arrayminus": below, "visible": True},
            )
        )
        best = int(np.argmin(means))
        figure.add_trace(
            go.Scatter(
                x=[lrs[best]],
                y=[means[best]],
                mode="markers",
                showlegend=False,
                marker={
                    "symbol": "star",
                    "size": 18,
                    "color": color,
                    "line": {"color": "black", "width": 1},
                },
                name=f"best for {name}",
            )
        )
    figure.update_layout(
        title=f"{c.metric} ({c.at}) against {lr_key} (★ best)",
        template="plotly_white",
        height=420,
        xaxis={"type": "log", "title": lr_key},
        yaxis={"title": c.metric},
    )
    return figure


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def config_diff(c: Comparison) -> str:
    """Every key that differs between arms, one row each, an arm a column."""
    keys = c.arms.diff
    if not keys:
        return "<p class='info'>Every arm has the same config (seeds aside).</p>"
    header = ["key", *(s.label for s in c.summaries)]
    rows = []
    for key in keys:
        cells = [show(s.arm.runs[0].flat_config.get(key, MISSING)) for s in c.summaries]
        rows.append(
            f"<tr><td>{html.escape(key)}</td>"
            + "".join(
                f"<td class='{'differs' if v != cells[0] else ''}'>{html.escape(v)}</td>"
                for v in cells
            )
            + "</tr>"
        )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


SAMPLE_HEADER = re.compile(r"^--- step (\d+), prompt .*$", re.MULTILINE)


def last_sample(run: Run) -> tuple[str, str] | None:
    """(header, text) of the last sample in samples.txt, if any."""
    path = run.path / "samples.txt"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    headers = list(SAMPLE_HEADER.finditer(text))
    if not headers:
        return None
    last = headers[-1]
    return last.group(0).strip("- "), text[last.end() :].strip("\n")


def samples_section(c: Comparison) -> str:
    columns = []
    for s in c.summaries:
        blocks = []
        for i, run in enumerate(s.arm.runs):
            found = last_sample(run)
            if found is None:
                continue
            header, text = found
            summary = f"seed {run.seed}: {header}"
            blocks.append(
                f"<details{' open' if i == 0 else ''}><summary>{html.escape(summary)}</summary>"
                f"<pre>{html.escape(text)}</pre></details>"
            )
        if blocks:
            columns.append(f"<div><h3>{html.escape(s.label)}</h3>{''.join(blocks)}</div>")
    if not columns:
        return "<p class='info'>No run has written samples.txt yet.</p>"
    return f"<div class='samples'>{''.join(columns)}</div>"


def probe_images(run: Run) -> list[Path]:
    folder = run.path / "probes"
    if not folder.is_dir():
        return []
    images = sorted(folder.rglob("*.png"), key=lambda p: (p.stat().st_mtime, str(p)))
    return images[-MAX_IMAGES:]


def _image(path: Path, root: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(str(path.relative_to(root)))
    image = f"<img alt='{caption}' src='data:image/png;base64,{data}'>"
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"


def _status(training: Sequence[Run], refresh_s: int | None) -> str:
    if not training:
        return "Every run has finished."
    then = (
        f"this page reloads every {refresh_s} s"
        if refresh_s
        else "run tel report again (or with --watch) for their new points"
    )
    return f"{len(training)} run(s) still training or stopped: {then}."


def build_report(
    c: Comparison,
    axes: Sequence[str] = tuple(X_AXES),
    ys: Sequence[str] = DEFAULT_Y,
    smoothing: float = 0.6,
    refresh_s: int | None = None,
) -> str:
    """The page, as one string of HTML."""
    go, offline = _plotly()
    runs = [r for s in c.summaries for r in s.arm.runs]
    training = [r for r in runs if r.status not in ("done", "diverged")]
    figures: list[tuple[str, Any]] = []
    for key in ys:
        figure = curve_figure(go, c, key, axes, smoothing)
        if figure is not None:
            figures.append((key, figure))
    sweep_figure = lr_figure(go, c)
    probes = probe_keys(runs)
    probe_figures = []
    for key in probes[:MAX_PROBE_PLOTS]:
        figure = curve_figure(go, c, key, ("step",), 0.0)
        if figure is not None:
            probe_figures.append((key, figure))
    counter = iter(range(10_000))

    def div(figure: Any) -> str:
        return figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{next(counter)}",
            default_height="420px",
            config={"displaylogo": False, "responsive": True},
        )

    header, rows = findings_rows(c)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{refresh_s}'>" if refresh_s and training else "",
        f"<title>tel report: {len(runs)} run(s), {len(c.summaries)} arm(s)</title>",
        f"<style>{STYLE}</style>",
        f"<script type='text/javascript'>{offline.get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>tel report: {len(runs)} run(s) in {len(c.summaries)} arm(s)</h1>",
        f"<p class='info'>Written {time.strftime('%Y-%m-%d %H:%M:%S')}. "
        f"{_status(training, refresh_s)}</p>",
        "<h2>Comparison</h2>",
        f"<p>{html.escape(c.metric)} at {html.escape(c.at)}: mean, std and 95% interval over "
        f"each arm's seeds; the difference from the baseline <b>{html.escape(c.baseline.label)}"
        f"</b> with Welch's t-test (alpha = {c.alpha}).</p>",
        _table(header, rows),
        *(f"<div class='note'>{html.escape(n)}</div>" for n in c.notes),
        _table(COST_HEADER, cost_rows(c)),
    ]
    lines = lr_batch_lines(c)
    if lines:
        parts.append("<h2>Learning rate against batch size</h2><ul>")
        parts += [f"<li>{html.escape(line.strip())}</li>" for line in lines]
        parts.append("</ul>")
    parts += ["<h2>Config diff</h2>", config_diff(c)]
    parts += ["<h2>Curves</h2><div class='plots'>"]
    parts += [f"<div>{div(f)}</div>" for _, f in figures]
    if sweep_figure is not None:
        parts.append(f"<div>{div(sweep_figure)}</div>")
    parts.append("</div>")
    parts += ["<h2>Samples</h2>", samples_section(c)]
    parts.append("<h2>Probes</h2>")
    if probe_figures:
        parts.append(
            f"<p class='info'>Scalars the probes recorded: {html.escape(', '.join(probes))}</p>"
        )
        parts.append("<div class='plots'>")
        parts += [f"<div>{div(f)}</div>" for _, f in probe_figures]
        parts.append("</div>")
        if len(probes) > MAX_PROBE_PLOTS:
            parts.append(f"<p class='info'>(the first {MAX_PROBE_PLOTS} are drawn)</p>")
    images = [(s, r, probe_images(r)) for s in c.summaries for r in s.arm.runs[:1]]
    for s, run, found in images:
        if found:
            parts.append(f"<h3>{html.escape(s.label)} (seed {run.seed})</h3>")
            parts += [_image(p, run.path) for p in found]
    if not probe_figures and not any(found for _, _, found in images):
        parts.append("<p class='info'>These runs recorded no probes.</p>")
    parts.append(
        "<h2>Runs</h2>"
        + _table(
            ["run", "arm", "seed", "status", "steps"],
            [
                [str(r.path), s.label, str(r.seed), r.status, r.progress()]
                for s in c.summaries
                for r in s.arm.runs
            ],
        )
    )
    parts.append(
        "<details><summary>the baseline's resolved config</summary><pre>"
        + html.escape(json.dumps(c.baseline.arm.runs[0].config, indent=2))
        + "</pre></details>"
    )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(page: str, path: Path) -> None:
    """Written to a temporary file and renamed: a browser reloading it never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
