"""The instance <-> class encoding (core/instances.py): touching objects come back apart."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk
from skimage.measure import label as connected_components

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.instances import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    dense_objects_warning,
    instance_classes,
    instances_from_classes,
    median_object_size,
    min_object_size,
    objects_of_classes,
    training_classes,
)
from napari_unetseg.core.object_sink import ObjectSlices
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


@pytest.mark.parametrize("seed", range(5))
def test_touching_objects_come_back_apart(seed):
    truth = touching_discs(seed=seed)
    classes = instance_classes(truth)
    objects = instances_from_classes(classes)
    scores = object_scores(truth, objects)
    pixel_only = object_scores(truth, connected_components(truth > 0, connectivity=1))
    assert pixel_only.merges > 0  # touching objects merge in the components of the mask
    assert scores.merges == 0 and scores.n_pred == scores.n_true
    assert scores.f1 == 1.0 and scores.ap > 0.85
    assert np.array_equal(objects > 0, truth > 0)  # every foreground pixel is in an object


def test_the_classes_are_background_the_core_of_each_object_and_its_rim():
    truth = np.zeros((20, 30), np.uint8)
    truth[2:12, 2:12] = 1  # alone
    truth[2:12, 12:22] = 2  # touching object 1
    truth[15:17, 25:27] = 3  # all edge: all interior, so that it has a seed
    classes = instance_classes(truth)  # the core: at least half of the largest depth (4) from the edge
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {BACKGROUND, INTERIOR, BOUNDARY}
    assert np.all(classes[truth == 0] == BACKGROUND)
    assert np.all(classes[2:4, 2:12] == BOUNDARY) and np.all(classes[4:10, 4:10] == INTERIOR)
    assert np.all(classes[2:12, 10:14] == BOUNDARY)  # 2 px on each side of the contact
    assert 0.5 < (classes[truth == 1] == BOUNDARY).mean() < 0.75
    assert np.all(classes[15:17, 25:27] == INTERIOR)
    objects = instances_from_classes(classes, min_size=1)
    assert object_scores(truth, objects).f1 == 1.0
    assert instances_from_classes(classes).max() == 2  # the 4-pixel object is under MIN_SIZE


def test_3d_objects_round_trip():
    truth = np.zeros((12, 40, 40), np.uint32)
    truth[1:11, 5:20, 5:20] = 1
    truth[1:11, 5:20, 20:35] = 2  # touching in 3D along a plane
    truth[3:9, 25:35, 5:15] = 3
    objects = instances_from_classes(instance_classes(truth))
    assert object_scores(truth, objects).f1 == 1.0


def test_a_speck_of_interior_inside_a_large_object_does_not_split_it():
    """Large nuclei (S-BSST265) came back split where the network left a speck of interior
    beside the core: seeds under SEED_SHARE of the largest in their piece of foreground
    are dropped. A smaller object touching a large one keeps its seed."""
    classes = np.full((20, 40), BOUNDARY, np.uint8)
    classes[3:9, 3:9] = INTERIOR  # 36 px
    classes[14, 14] = INTERIOR  # a one-pixel speck of noise inside the same foreground
    classes[12:14, 30:32] = INTERIOR  # 4 px: 11 % of the largest, a small touching object
    objects = instances_from_classes(classes)
    assert objects.max() == 2 and objects[14, 14] == objects[5, 5] != objects[13, 31]
    assert instances_from_classes(classes, seed_share=0).max() == 3  # the speck made its own object
    assert instances_from_classes(classes, seed_share=0, min_seed=4).max() == 2
    alone = np.zeros((20, 40), np.uint8)
    alone[2:8, 2:8], alone[4:6, 4:6] = BOUNDARY, INTERIOR
    alone[12:18, 12:20], alone[13:17, 13:19] = BOUNDARY, INTERIOR  # larger, in a piece of its own
    assert instances_from_classes(alone).max() == 2


def test_specks_of_boundary_are_no_objects():
    """A network that has seen few objects leaves specks of boundary class around them;
    each was an object of its own (the Train dock's painted objects gave 34 for 14)."""
    classes = np.zeros((30, 30), np.uint8)
    classes[2:14, 2:14] = BOUNDARY
    classes[5:11, 5:11] = INTERIOR
    classes[20, 20] = classes[22:24, 25:27] = BOUNDARY  # 1 and 4 pixels apart from it
    classes[18:26, 2:6] = BOUNDARY  # 32 pixels of boundary alone: the network saw no core there
    objects = instances_from_classes(classes, seedless=True)  # as before stop 42: an object
    assert objects.max() == 2 and objects[20, 20] == objects[22, 25] == 0 and objects[20, 3] == 2
    assert instances_from_classes(classes, min_size=1, seedless=True).max() == 4


def test_foreground_without_a_core_is_no_object():
    """A model trained from a few painted objects called debris foreground without a core
    (S-BSST265: 963 objects for 962 nuclei, 398 of them false); the core is the network's
    word for an object, so a piece of foreground without one is none."""
    classes = np.zeros((40, 40), np.uint8)
    classes[2:14, 2:14] = BOUNDARY
    classes[5:11, 5:11] = INTERIOR  # an object
    classes[20:36, 20:36] = BOUNDARY  # 256 pixels of rim, no core: no object
    objects = instances_from_classes(classes)
    assert objects.max() == 1 and objects[8, 8] == objects[2, 2] == 1 and not objects[20:36, 20:36].any()


def test_debris_much_smaller_than_the_objects_learnt_is_no_object():
    """Large nuclei (S-BSST265: median 9518 px) came with hundreds of specks of debris,
    each an object; an object model drops objects under MIN_SHARE of the median object it
    was trained on (recorded in its file), and MIN_SIZE where objects are small."""
    labels = np.zeros((2, 60, 60), np.uint16)
    labels[0, 5:45, 5:45] = 1  # 1600 px
    labels[0, 50:55, 50:58] = 2  # 40 px
    labels[1, 10:40, 10:40] = 7  # 900 px: each plane's objects count apart
    assert median_object_size([labels], "dense") == 900
    assert median_object_size([labels], "sparse") == 470  # painted: 2, 3, ... (1: background strokes)
    assert median_object_size([labels], "dense", volume=True) == 900  # one volume per stack
    assert median_object_size([np.zeros((4, 4), np.uint8)], "dense") == 0
    assert median_object_size([np.array([[0, 2**32 - 1]], np.uint32)], "dense") == 1  # no id-sized array
    assert min_object_size(0) == min_object_size(700) == 15 and min_object_size(4000) == 80
    classes = np.zeros((60, 60), np.uint8)
    classes[5:45, 5:45], classes[15:35, 15:35] = BOUNDARY, INTERIOR
    classes[50:57, 50:57], classes[52:55, 52:55] = BOUNDARY, INTERIOR  # 49 px of debris
    assert objects_of_classes(classes, INTERIOR, BOUNDARY).max() == 2
    assert objects_of_classes(classes, INTERIOR, BOUNDARY, min_object_size(4000)).max() == 1


def painted(truth: np.ndarray, keep: list[int]) -> np.ndarray:
    """Sparse object labels as a user paints them: the objects ``keep`` whole (ids from
    2 on), a background stroke (label 1) along the top rows, the rest unpainted (0)."""
    labels = np.zeros(truth.shape, np.uint16)
    labels[:2] = np.where(truth[:2] == 0, 1, 0)
    for new, old in enumerate(keep, start=2):
        labels[truth == old] = new
    return labels


def test_painted_objects_and_background_strokes_become_sparse_classes():
    truth = touching_discs(seed=1)
    labels = painted(truth, keep=[1, 2, 3])
    classes = training_classes(labels[None], "sparse")[0]
    assert set(np.unique(classes)) == {0, 1, 2, 3}  # unpainted, background, interior, boundary
    assert np.all(classes[labels == 1] == 1)
    near = ndimage.binary_dilation(labels >= 2, iterations=2) & (labels == 0)
    assert np.all(classes[near] == 1)  # just outside a whole object: background
    assert np.all(classes[(labels == 0) & ~near] == 0)  # the rest stays unpainted
    dense = instance_classes(np.where(labels >= 2, labels, 0))
    inside = labels >= 2
    assert np.array_equal(classes[inside], dense[inside] + 1)  # the painted objects' own classes


def test_objects_mode_refuses_class_strokes_and_says_how_to_paint_objects():
    truth = touching_discs(seed=2)
    strokes = np.zeros(truth.shape, np.uint8)
    strokes[:2] = 1
    with pytest.raises(UserInputError, match="no object is painted.*press M"):
        training_classes(strokes[None], "sparse")
    for row in (20, 50, 80):  # three separate strokes of "foreground", label 2
        strokes[row, 10:60] = 2
    with pytest.raises(UserInputError, match="several separate pieces.*press M"):
        training_classes(strokes[None], "sparse")
    with pytest.raises(UserInputError, match="class mask"):  # dense: a mask, not ids
        training_classes((truth > 0).astype(np.uint8)[None], "dense")


def test_object_ground_truth_read_as_strokes_is_warned_about():
    truth = touching_discs(seed=3)
    assert "dense labels" in dense_objects_warning([truth[None]])
    assert dense_objects_warning([painted(truth, keep=[1, 2, 3])[None]]) is None


def test_object_ids_run_on_over_the_slices_of_a_stack():
    truth = np.stack([touching_discs(seed=s) for s in range(3)])
    found = np.zeros(truth.shape, np.uint32)
    sink = ObjectSlices(found, len(truth))
    for i, plane in enumerate(truth):
        sink[i] = instance_classes(plane)
    counts = [len(np.unique(p[p > 0])) for p in truth]
    assert found.max() == sum(counts)  # one id per object of the stack
    for i in range(3):
        assert object_scores(truth[i], found[i]).f1 == 1.0


def test_a_3d_sink_waits_for_every_slice_then_finds_3d_objects():
    truth = np.zeros((12, 40, 40), np.uint32)
    truth[1:11, 5:20, 5:20] = 1
    truth[1:11, 5:20, 20:35] = 2
    classes = instance_classes(truth) + 1  # as a sparse model numbers them: 1, 2, 3
    found = np.zeros(truth.shape, np.uint32)
    sink = ObjectSlices(found, len(truth), volume=True, interior=2, boundary=3)
    for i in range(len(truth) - 1):
        sink[i] = classes[i]
    assert not found.any()  # nothing before the last slice
    sink[len(truth) - 1] = classes[-1]
    assert found.max() == 2 and object_scores(truth, found).f1 == 1.0
