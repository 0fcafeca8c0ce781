"""The instance <-> class encoding (core/instances.py): touching objects come back apart."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.measure import label as connected_components

from napari_unetseg.core.instances import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    instance_classes,
    instances_from_classes,
)
from napari_unetseg.core.objects import object_scores


def touching_discs(shape=(96, 96), seed=0, n=14):
    """Discs of radius 6-10 pressed into each other as nuclei are (centres at least 0.8 of
    their radii apart; the earlier disc keeps the overlap), many touching."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.uint16)
    placed = []
    while len(placed) < n:
        r = int(rng.integers(6, 11))
        centre = rng.integers(r, np.array(shape) - r)
        if any(np.hypot(*(centre - c)) < 0.8 * (r + q) for c, q in placed):
            continue
        rows, cols = disk(tuple(centre), r, shape=shape)
        free = image[rows, cols] == 0
        image[rows[free], cols[free]] = len(placed) + 1
        placed.append((centre, r))
    return image


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_touching_objects_come_back_apart(seed, width):
    truth = touching_discs(seed=seed)
    classes = instance_classes(truth, boundary_width=width)
    objects = instances_from_classes(classes)
    scores = object_scores(truth, objects)
    pixel_only = object_scores(truth, connected_components(truth > 0, connectivity=1))
    assert pixel_only.merges > 0  # touching objects merge in the components of the mask
    assert scores.merges == 0 and scores.n_pred == scores.n_true
    assert scores.f1 == 1.0 and scores.ap > 0.85
    assert np.array_equal(objects > 0, truth > 0)  # every foreground pixel is in an object


def test_the_classes_are_background_interior_and_a_band_of_boundary():
    truth = np.zeros((20, 30), np.uint8)
    truth[2:12, 2:12] = 1  # alone
    truth[2:12, 12:22] = 2  # touching object 1
    truth[15:17, 25:27] = 3  # too small for an interior: all interior
    classes = instance_classes(truth, boundary_width=2)
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {BACKGROUND, INTERIOR, BOUNDARY}
    assert np.all(classes[truth == 0] == BACKGROUND)
    assert np.all(classes[2:4, 2:12] == BOUNDARY) and np.all(classes[4:10, 4:10] == INTERIOR)
    assert np.all(classes[2:12, 10:14] == BOUNDARY)  # 2 px on each side of the contact
    assert np.all(classes[15:17, 25:27] == INTERIOR)
    objects = instances_from_classes(classes)
    assert object_scores(truth, objects).f1 == 1.0


def test_3d_objects_round_trip():
    truth = np.zeros((12, 40, 40), np.uint32)
    truth[1:11, 5:20, 5:20] = 1
    truth[1:11, 5:20, 20:35] = 2  # touching in 3D along a plane
    truth[3:9, 25:35, 5:15] = 3
    objects = instances_from_classes(instance_classes(truth))
    assert object_scores(truth, objects).f1 == 1.0


def test_small_interior_specks_can_be_left_out_as_seeds():
    classes = np.full((20, 20), BOUNDARY, np.uint8)
    classes[3:9, 3:9] = INTERIOR
    classes[14, 14] = INTERIOR  # a one-pixel speck of noise inside the same foreground
    assert instances_from_classes(classes).max() == 2  # two seeds: a split
    assert instances_from_classes(classes, min_seed=4).max() == 1
