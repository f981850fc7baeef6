"""The run directory's ``probes/`` folder: what probes saw, whatever loggers were chosen.

runs/<name>/probes/
    histograms.jsonl            {"step", "name", "edges", "counts"} a line
    text.jsonl                  {"step", "name", "text"} a line (events, warnings)
    <image name>/step_XXXXXXX.png   e.g. attn/heatmap/layer0/step_0000500.png

Scalars go into ``metrics.jsonl`` with the loop's own. Only rank 0 writes; the folder is
made at the first write, so building a run never touches an old run's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tel_core import ui
from tel_core.registry.media import Histogram, png_bytes

#: The run directory's folder of the probes' histograms, images and text.
PROBES_DIR = "probes"


def image_file(step: int) -> str:
    return f"step_{step:07d}.png"


class ProbeRecords:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / PROBES_DIR

    def histogram(self, step: int, name: str, histogram: Histogram) -> None:
        record = {"name": name, "edges": list(histogram.edges), "counts": list(histogram.counts)}
        self._append("histograms.jsonl", step, record)

    def text(self, step: int, name: str, text: str) -> None:
        self._append("text.jsonl", step, {"name": name, "text": text})

    def image(self, step: int, name: str, image: Any) -> Path:
        path = self.dir / name / image_file(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(image))
        return path

    def _append(self, file: str, step: int, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / file, "a", encoding="utf-8") as f:
            ui.write_json_line(f, {"step": step, **record})
