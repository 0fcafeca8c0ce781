"""napari sample data: the synthetic nuclei stack with strokes and ground truth."""

from __future__ import annotations

from napari_unetseg.core.sample import make_sample


def make_sample_data() -> list[tuple]:
    """Image, painted strokes (1 = background, 2 = nucleus) and the dense ground truth."""
    sample = make_sample()
    return [
        (sample.image, {"name": "nuclei"}, "image"),
        (sample.strokes, {"name": "strokes"}, "labels"),
        (sample.truth, {"name": "ground truth", "visible": False}, "labels"),
    ]
