"""What probes hand out besides numbers: histograms and images, in plain numpy.

Loggers receive them through ``Logger.log_histogram`` and ``Logger.log_image``; the core
writes them into the run directory's ``probes/`` folder, PNG images included, without any
plotting or imaging package (``png_bytes``).
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from typing import Any

import attrs
import numpy as np

#: Names of probe results (metrics, histograms, images, text): slash-separated parts of
#: letters, digits, ``_ . -``, such as ``grad_norm/blocks.0.attn`` or ``attn/heatmap/layer0``.
#: Image names become paths under ``probes/``, so no part may be ``.`` or ``..``.
NAME = re.compile(r"^(?!.*(^|/)\.{1,2}(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def valid_name(name: str) -> bool:
    return isinstance(name, str) and bool(NAME.match(name))


@attrs.frozen
class Histogram:
    """Counts (or weights) in bins: ``counts[i]`` falls in ``[edges[i], edges[i + 1])``.

    Build one from values with ``Histogram.of(values)``, or give the bins directly for a
    weighted distribution (say, attention weight per distance).
    """

    edges: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    counts: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))

    def __attrs_post_init__(self) -> None:
        if len(self.edges) != len(self.counts) + 1 or not self.counts:
            raise ValueError(
                f"a histogram needs one more edge than counts and at least one bin, got "
                f"{len(self.edges)} edges for {len(self.counts)} counts"
            )
        if any(b <= a for a, b in itertools.pairwise(self.edges)):
            raise ValueError("histogram edges must increase")

    @classmethod
    def of(cls, values: Any, bins: int = 64) -> Histogram:
        """The histogram of ``values`` (any array-like, a CPU tensor included) in ``bins``
        equal bins between their smallest and largest finite value."""
        data = np.asarray(values, dtype=np.float64).ravel()
        data = data[np.isfinite(data)]
        if data.size == 0:
            return cls((0.0, 1.0), (0.0,))
        low, high = float(data.min()), float(data.max())
        if high <= low:  # every value the same: one bin around it
            low, high = low - 0.5, high + 0.5
        counts, edges = np.histogram(data, bins=bins, range=(low, high))
        return cls(edges.tolist(), counts.tolist())

    @property
    def total(self) -> float:
        return float(sum(self.counts))

    def summary(self) -> dict[str, float]:
        """min, max, num, sum and sum_squares, estimated from the bin centres (what
        TensorBoard's raw histograms ask for)."""
        centres = [(a + b) / 2 for a, b in itertools.pairwise(self.edges)]
        used = [i for i, c in enumerate(self.counts) if c > 0] or [0]
        return {
            "min": self.edges[used[0]],
            "max": self.edges[used[-1] + 1],
            "num": self.total,
            "sum": sum(c * x for c, x in zip(self.counts, centres, strict=True)),
            "sum_squares": sum(c * x * x for c, x in zip(self.counts, centres, strict=True)),
        }


def check_image(image: Any) -> np.ndarray:
    """``image`` if it is what loggers accept: a uint8 numpy array (height, width, 3 or 4)."""
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] in (3, 4)
        and image.shape[0] > 0
        and image.shape[1] > 0
    ):
        what = getattr(image, "shape", type(image).__name__)
        raise ValueError(
            f"an image must be a uint8 numpy array (height, width, 3 or 4), got "
            f"{getattr(image, 'dtype', '')} {what}".replace("  ", " ")
        )
    return image


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (uint8, height x width x 3 or 4) encoded as a PNG file."""
    image = np.ascontiguousarray(check_image(image))
    height, width, channels = image.shape
    # Each row starts with filter type 0 (none); zlib does the compressing.
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    colour = 2 if channels == 3 else 6  # RGB or RGBA, 8 bits per channel
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
