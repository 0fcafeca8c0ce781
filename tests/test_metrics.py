"""Metrics checked against independent implementations (scikit-learn, scipy, scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, directed_hausdorff
from skimage.metrics import hausdorff_distance
from skimage.segmentation import find_boundaries
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.metrics import error_map, evaluate, format_table, masked_dice, numbering_warnings


def _random_labels(seed, shape=(3, 40, 50), k=3):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(k, *shape)), (0, 0, 3, 3))
    return smooth.argmax(0).astype(np.uint8)


def test_overlap_metrics_match_sklearn():
    truth = _random_labels(0)
    pred = _random_labels(1)
    result = evaluate(pred, truth)
    t, p = truth.ravel(), pred.ravel()
    labels = list(result.classes)
    for fn, name in [
        (f1_score, "dice"),
        (jaccard_score, "iou"),
        (precision_score, "precision"),
        (recall_score, "recall"),
        (f1_score, "f1"),
    ]:
        expected = fn(t, p, labels=labels, average=None)
        got = [result.per_class[v][name] for v in labels]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # per slice too
    for i in range(truth.shape[0]):
        expected = jaccard_score(truth[i].ravel(), pred[i].ravel(), labels=labels, average=None)
        np.testing.assert_allclose([result.per_slice[i][v]["iou"] for v in labels], expected)


def _boundary_image(mask):
    # Same definition as ours (and MONAI's): the image edge counts as outside the mask.
    return find_boundaries(np.pad(mask, 1), mode="inner", connectivity=1)[1:-1, 1:-1]


def _boundary_points(mask):
    return np.argwhere(_boundary_image(mask))


def test_hausdorff_matches_scipy_and_skimage():
    truth = _random_labels(2, shape=(1, 60, 60))[0]
    pred = _random_labels(3, shape=(1, 60, 60))[0]
    result = evaluate(pred, truth)
    for v in result.classes:
        a, b = _boundary_points(pred == v), _boundary_points(truth == v)
        expected = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
        assert result.per_class[v]["hausdorff"] == pytest.approx(expected)
        sk = hausdorff_distance(_boundary_image(pred == v), _boundary_image(truth == v))
        assert result.per_class[v]["hausdorff"] == pytest.approx(sk)
        d = cdist(a, b)
        hd95 = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
        assert result.per_class[v]["hd95"] == pytest.approx(hd95)


def test_empty_class_convention():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:5, 2:5] = 1
    pred = np.zeros_like(truth)
    result = evaluate(pred, truth, classes=[1, 2])
    missed, absent = result.per_class[1], result.per_class[2]
    assert missed["dice"] == 0 and missed["recall"] == 0 and np.isnan(missed["precision"])
    assert np.isnan(missed["hausdorff"])
    assert absent["dice"] == 1 and absent["iou"] == 1 and absent["hausdorff"] == 0
    assert result.mean["dice"] == 0.5
    as_json = result.to_dict()
    assert as_json["per_class"]["1"]["hausdorff"] is None
    assert as_json["dice"] == {"1": 0.0, "2": 1.0}


def test_perfect_prediction_and_ignore():
    truth = _random_labels(4)
    result = evaluate(truth.copy(), truth, ignore=[0])
    assert 0 not in result.classes
    for v in result.classes:
        assert result.per_class[v]["dice"] == 1 and result.per_class[v]["hausdorff"] == 0
    assert "mean" in format_table(result)


def test_bad_inputs():
    with pytest.raises(UserInputError, match="shape"):
        evaluate(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(UserInputError, match="integer"):
        evaluate(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))


def test_masked_dice_pools_labelled_pixels_and_skips_absent_classes():
    rng = np.random.default_rng(3)
    pairs = []
    for shape in ((20, 30), (16, 16)):  # slices of different sizes, as held-out slices can be
        truth = rng.integers(-1, 3, shape)  # -1: unpainted
        pred = np.where(truth >= 0, rng.integers(0, 3, shape), -1)
        pairs.append((pred, truth))
    dice = masked_dice(pairs, 4)  # class 3 is in neither
    for k in range(3):  # brute force over the pooled labelled pixels
        p = np.concatenate([(pred == k)[truth >= 0] for pred, truth in pairs])
        t = np.concatenate([(truth == k)[truth >= 0] for _, truth in pairs])
        assert dice[k] == pytest.approx(f1_score(t, p))
    assert np.isnan(dice[3])


def test_error_map_marks_true_false_positives_and_false_negatives():
    pred = np.array([[2, 2, 1], [1, 2, 1]])
    truth = np.array([[2, 1, 2], [1, 2, 1]])
    assert error_map(pred, truth, 2).tolist() == [[1, 2, 3], [0, 1, 0]]


def test_ignored_truth_values_are_left_out_of_every_metric():
    """ "Skip class 0": truth-0 pixels (unlabelled) count for no class, not as false positives."""
    truth = np.array([[0, 0, 1, 1, 2, 2]])
    pred = np.array([[1, 2, 1, 1, 2, 2]])
    scored = evaluate(pred, truth, ignore=[0], surface=False)
    assert scored.classes == (1, 2)
    assert scored.per_class[1]["dice"] == 1.0 and scored.per_class[2]["dice"] == 1.0
    assert evaluate(pred, truth, surface=False).per_class[1]["dice"] < 1.0  # without ignore they count


def test_headline_is_the_foreground_by_name():
    truth = np.array([[1, 1, 1, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 2, 2, 2]])
    named = evaluate(pred, truth, surface=False, names={1: "background", 2: "nucleus"})
    assert named.foreground() == (2,) and named.headline() == "nucleus Dice 0.800"
    assert named.mean["dice"] > 0.8  # the mean over all classes would flatter it
    unnamed = evaluate(pred, truth, surface=False)
    assert unnamed.headline().startswith("class 2 Dice")


def test_a_shifted_numbering_is_flagged():
    truth = np.array([[0, 0, 0, 1, 1, 0]])
    assert numbering_warnings(truth + 1, truth)
    assert not numbering_warnings(truth, truth)
    assert not numbering_warnings(np.zeros_like(truth), truth)  # a poor prediction is not a numbering
