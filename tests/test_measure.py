"""Per-object measurements (core/measure.py) against numpy's own sums."""

from __future__ import annotations

import numpy as np
import pytest
from test_instances import touching_discs

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.measure import measure_objects, table_rows


def test_each_object_gets_its_area_centroid_and_intensities():
    rng = np.random.default_rng(0)
    objects = np.stack([touching_discs(seed=s) for s in range(2)])
    objects[1][objects[1] > 0] += 100  # ids unique over the stack
    objects[0, :3, :5] = 77  # an object cut by the image's edge
    image = rng.uniform(0, 1000, (2, 2, *objects.shape[1:])).astype(np.float32)  # N, C, Y, X
    table = measure_objects(objects, image)
    ids = [np.unique(p[p > 0]) for p in objects]
    assert table["label"].tolist() == np.concatenate(ids).tolist()
    assert table["plane"].tolist() == [0] * len(ids[0]) + [1] * len(ids[1])
    for row, (plane, label) in enumerate(zip(table["plane"], table["label"])):
        inside = objects[plane] == label
        ys, xs = np.nonzero(inside)
        assert table["area"][row] == inside.sum()
        assert np.isclose(table["centroid-0"][row], ys.mean())
        assert np.isclose(table["centroid-1"][row], xs.mean())
        assert table["bbox-2"][row] == ys.max() + 1 and table["bbox-3"][row] == xs.max() + 1
        for c in range(2):
            assert np.isclose(table[f"intensity_mean-{c}"][row], image[plane, c][inside].mean(), rtol=1e-5)
            assert table[f"intensity_max-{c}"][row] == image[plane, c][inside].max()
        assert 0 <= table["eccentricity"][row] < 1
        edge = inside[0].any() or inside[-1].any() or inside[:, 0].any() or inside[:, -1].any()
        assert table["touches_edge"][row] == edge
    assert table["touches_edge"].any() and not table["touches_edge"].all()


def test_3d_objects_are_measured_as_volumes():
    objects = np.zeros((10, 30, 30), np.uint32)
    objects[2:8, 5:15, 5:15] = 4
    objects[1:9, 18:28, 10:20] = 9
    table = measure_objects(objects, volume=True)
    assert "plane" not in table and "eccentricity" not in table
    assert table["label"].tolist() == [4, 9] and table["area"].tolist() == [600, 800]
    assert table["axis_major_length"][1] >= table["axis_minor_length"][1] > 0
    assert table["touches_edge"].tolist() == [False, False]
    objects[9, 20, 12] = 9  # object 9 reaches the last slice: a face of the volume
    assert measure_objects(objects, volume=True)["touches_edge"].tolist() == [False, True]
    rows = table_rows(table)
    assert rows[0][0] == "label" and len(rows) == 3


def test_an_image_of_another_shape_is_refused():
    with pytest.raises(UserInputError, match="differ in shape"):
        measure_objects(np.ones((1, 20, 20), np.uint8), np.zeros((1, 1, 20, 21)))
