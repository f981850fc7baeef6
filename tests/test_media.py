"""Histograms and PNG images as probes hand them out."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from tel_core.registry.media import Histogram, png_bytes, valid_name


def test_a_png_reads_back_as_the_image(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        image = rng.integers(0, 256, size=(7, 13, channels), dtype=np.uint8)
        path = tmp_path / f"image{channels}.png"
        path.write_bytes(png_bytes(image))
        decoded = (matplotlib.image.imread(path) * 255).round().astype(np.uint8)
        assert np.array_equal(decoded, image)


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8)],
)
def test_only_uint8_colour_images_are_images(image):
    with pytest.raises(ValueError, match="an image must be a uint8 numpy array"):
        png_bytes(image)


def test_a_histogram_of_values_matches_numpy():
    values = np.random.default_rng(1).normal(size=1000)
    histogram = Histogram.of(np.append(values, [np.nan, np.inf]), bins=10)
    counts, edges = np.histogram(values, bins=10)
    assert histogram.counts == tuple(counts.astype(float))
    assert histogram.edges == pytest.approx(edges)
    assert histogram.total == 1000
    same = Histogram.of([2.0, 2.0], bins=1)  # one value: a bin around it
    assert same.edges == (1.5, 2.5) and same.counts == (2.0,)
    summary = Histogram((0, 1, 3), (2, 1)).summary()
    assert summary == {"min": 0, "max": 3, "num": 3, "sum": 2 * 0.5 + 2, "sum_squares": 0.5 + 4}


def test_a_histogram_needs_increasing_edges_and_one_more_edge_than_counts():
    with pytest.raises(ValueError, match="one more edge than counts"):
        Histogram((0, 1), (1, 2))
    with pytest.raises(ValueError, match="edges must increase"):
        Histogram((0, 2, 1), (1, 2))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("grad_norm/blocks.0.attn", True),
        ("attn/heatmap/layer0", True),
        ("../escape", False),
        ("a/./b", False),
        ("a//b", False),
        ("/absolute", False),
        ("with space", False),
    ],
)
def test_names_are_safe_paths(name, valid):
    assert valid_name(name) is valid
