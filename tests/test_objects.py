"""Object scores (core/objects.py) against hand-made cases and a brute-force matching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.objects import AP_THRESHOLDS, match, object_scores, overlaps


def squares(shape, boxes, ids=None):
    """An instance image with one object per ``(y0, y1, x0, x1)`` box (later ones on top)."""
    image = np.zeros(shape, np.uint32)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        image[y0:y1, x0:x1] = ids[k] if ids else k + 1
    return image


def brute_force_matches(truth, pred, threshold):
    """The most one-to-one pairs with IoU >= threshold, by trying every assignment."""
    t_ids, p_ids = [i for i in np.unique(truth) if i], [j for j in np.unique(pred) if j]

    def iou(i, j):
        a, b = truth == i, pred == j
        return (a & b).sum() / (a | b).sum()

    best = 0
    for k in range(min(len(t_ids), len(p_ids)), 0, -1):
        for chosen in itertools.combinations(t_ids, k):
            for partners in itertools.permutations(p_ids, k):
                if all(iou(i, j) >= threshold for i, j in zip(chosen, partners)):
                    return k
    return best


def test_a_perfect_prediction_scores_one_whatever_its_ids():
    truth = squares((40, 40), [(0, 10, 0, 10), (20, 30, 5, 15), (5, 15, 25, 35)])
    pred = squares((40, 40), [(0, 10, 0, 10), (20, 30, 5, 15), (5, 15, 25, 35)], ids=[70000, 9, 3])
    scores = object_scores(truth, pred)
    assert (scores.tp, scores.fp, scores.fn) == (3, 0, 0)
    assert scores.f1 == scores.ap == scores.panoptic_quality == 1.0
    assert scores.splits == scores.merges == 0


def test_scores_follow_their_definitions_on_a_hand_made_case():
    # true A (10x10) and a prediction shifted by 2 columns: IoU 80 / 120 = 2/3
    # true B (10x10) and a prediction 10x5 inside it: IoU 0.5; a false object; a missed object
    truth = squares((40, 60), [(0, 10, 0, 10), (20, 30, 0, 10), (0, 10, 40, 50)])
    pred = squares((40, 60), [(0, 10, 2, 12), (20, 30, 0, 5), (30, 38, 30, 38)])
    scores = object_scores(truth, pred)
    assert (scores.n_true, scores.n_pred, scores.tp, scores.fp, scores.fn) == (3, 3, 2, 1, 1)
    assert scores.precision == scores.recall == scores.f1 == pytest.approx(2 / 3)
    assert scores.mean_matched_iou == pytest.approx((2 / 3 + 0.5) / 2)
    assert scores.panoptic_quality == pytest.approx((2 / 3 + 0.5) / (2 + 0.5 + 0.5))
    # DSB2018: TP / (TP + FP + FN) at each threshold: 2 pairs at 0.5, 1 up to 2/3, none above
    expected = {t: (2 / 4 if t <= 0.5 else 1 / 5 if t <= 2 / 3 else 0.0) for t in AP_THRESHOLDS}
    assert scores.ap_at == pytest.approx(expected)
    assert scores.ap == pytest.approx(np.mean(list(expected.values())))


def test_splits_and_merges_are_counted():
    # true object 1 cut in two predicted halves; true objects 2 and 3 predicted as one
    truth = squares((30, 60), [(0, 10, 0, 20), (15, 25, 0, 10), (15, 25, 12, 22)])
    pred = squares((30, 60), [(0, 10, 0, 10), (0, 10, 10, 20), (15, 25, 0, 22)])
    scores = object_scores(truth, pred)
    assert (scores.splits, scores.merges) == (1, 1)
    assert scores.tp == 1  # each half has IoU 0.5 with the true object: one is matched; the merge none


@pytest.mark.parametrize("seed", range(6))
def test_the_matching_finds_as_many_pairs_as_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(5):
        y, x = rng.integers(0, 18, 2)
        boxes.append((y, y + rng.integers(2, 7), x, x + rng.integers(2, 7)))
    truth = squares((24, 24), boxes[:4])
    pred = squares((24, 24), [(y0 + 1, y1, x0, x1 + 1) for y0, y1, x0, x1 in boxes[1:]])
    found = overlaps(truth, pred)
    for threshold in (0.1, 0.3, 0.5, 0.7):
        pairs, iou = match(found, threshold)
        assert len(pairs) == brute_force_matches(truth, pred, threshold)
        assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))  # one to one
        assert np.all(iou >= threshold)


def test_low_thresholds_prefer_more_pairs_over_one_better_pair():
    # true A = [0, 20), B = [20, 32); predicted Q = [0, 5), P = [5, 25):
    # IoU A-P 15/25 = 0.6, A-Q 5/20 = 0.25, B-P 5/27 = 0.19. At 0.15 taking the best pair
    # first (A-P) leaves one pair; the matching takes A-Q and B-P
    truth = np.zeros((1, 40), np.uint16)
    pred = np.zeros((1, 40), np.uint16)
    truth[0, 0:20], truth[0, 20:32] = 1, 2
    pred[0, 0:5], pred[0, 5:25] = 1, 2
    pairs, iou = match(overlaps(truth, pred), 0.15)
    assert sorted(map(tuple, pairs)) == [(0, 0), (1, 1)]
    assert len(pairs) == brute_force_matches(truth, pred, 0.15)
    assert iou.sum() == pytest.approx(0.25 + 5 / 27)


def test_3d_objects_are_scored_the_same_way():
    truth = np.zeros((6, 20, 20), np.int32)
    truth[1:5, 2:8, 2:8], truth[0:3, 10:18, 10:18] = 1, 2
    pred = truth.copy()
    pred[pred == 2] = 5
    pred[5, 0:3, 0:3] = 7  # a false object
    scores = object_scores(truth, pred)
    assert (scores.tp, scores.fp, scores.fn) == (2, 1, 0)


def test_bad_instance_images_are_refused_with_a_clear_message():
    ok = np.zeros((8, 8), np.uint8)
    with pytest.raises(UserInputError, match="above 2\\*\\*32"):
        object_scores(np.full((8, 8), 2**33, np.uint64), ok)
    with pytest.raises(UserInputError, match="integer object ids"):
        object_scores(ok, np.zeros((8, 8), np.float32))
    with pytest.raises(UserInputError, match="negative"):
        object_scores(np.full((8, 8), -1, np.int16), ok)
    with pytest.raises(UserInputError, match="differ in shape"):
        object_scores(ok, np.zeros((8, 9), np.uint8))


def test_nothing_on_either_side_gives_no_ratio():
    empty = np.zeros((8, 8), np.uint8)
    scores = object_scores(empty, empty)
    assert (scores.n_true, scores.n_pred) == (0, 0) and np.isnan(scores.f1) and np.isnan(scores.ap)


def test_unetseg_evaluate_objects_scores_planes_and_volumes(tmp_path, cli):
    import csv
    import json

    import tifffile

    truth = np.stack([squares((40, 60), [(0, 10, 0, 10), (0, 10, 10, 20), (20, 30, 30, 40)])] * 2)
    pred = truth.copy()
    pred[0][pred[0] == 2] = 1  # plane 0: the two touching objects predicted as one
    for name, array in (("truth", truth), ("pred", pred)):
        tifffile.imwrite(tmp_path / f"{name}.tif", array, metadata={"axes": "TYX"}, photometric="minisblack")
    args = ["evaluate", "--objects", "--prediction", tmp_path / "pred.tif", "--truth", tmp_path / "truth.tif"]
    proc = cli(*args, "--json", tmp_path / "o.json", "--csv", tmp_path / "o.csv")
    assert proc.returncode == 0, proc.stderr
    assert "headline: object F1@0.5" in proc.stdout
    result = json.loads((tmp_path / "o.json").read_text())
    assert not result["volume"] and len(result["per_image"]) == 2
    assert result["all"]["merges"] == 1 and result["all"]["n_true"] == 6 and result["all"]["n_pred"] == 5
    assert result["per_image"][1]["f1"] == 1.0
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert [r["image"] for r in rows] == ["all", "0", "1"] and float(rows[2]["ap"]) == 1.0
    # the same files with a Z axis: one volume of 3D objects (the merge now joins 3D objects)
    for name, array in (("truth", truth), ("pred", pred)):
        tifffile.imwrite(tmp_path / f"{name}.tif", array, metadata={"axes": "ZYX"}, photometric="minisblack")
    proc = cli(*args, "--json", tmp_path / "v.json")
    result = json.loads((tmp_path / "v.json").read_text())
    assert proc.returncode == 0 and result["volume"] and result["all"]["n_true"] == 3
    # options of class scores are refused with object scores
    proc = cli(*args, "--classes", "1")
    assert proc.returncode == 2 and "--classes is for class scores" in proc.stderr


def test_an_empty_plane_is_left_out_of_the_mean_and_written_as_null():
    import json

    from napari_unetseg.core.objects import evaluate_objects, format_object_table

    truth = np.zeros((2, 8, 8), np.uint8)
    truth[1, 2:4, 2:4] = 1
    result = evaluate_objects(truth, truth)
    assert result.total()["f1"] == 1.0  # the empty plane has no ratio, and does not count
    row = json.loads(json.dumps(result.to_dict(), allow_nan=False))["per_image"][0]
    assert row["f1"] is None and "n/a" in format_object_table(result)


def test_the_error_view_marks_matched_false_missed_split_and_merged_objects():
    from napari_unetseg.core.object_errors import FALSE, MATCHED, MERGED, MISSED, SPLIT, object_error_map

    truth = np.zeros((40, 60), np.uint16)
    pred = np.zeros_like(truth)
    truth[2:10, 2:10], pred[2:10, 3:10] = 1, 7  # matched
    truth[2:10, 20:28] = 2  # missed: nothing predicted over it
    truth[20:30, 2:20] = 3  # split in two halves
    pred[20:30, 2:11], pred[20:30, 11:20] = 8, 9
    truth[20:30, 30:38], truth[20:30, 38:46] = 4, 5  # merged into one
    pred[20:30, 30:46] = 10
    pred[34:38, 50:56] = 11  # false: no true object there
    kinds = object_error_map(pred, truth[None].repeat(2, 0)[0])
    assert np.all(kinds[2:10, 3:10] == MATCHED) and np.all(kinds[2:10, 20:28] == MISSED)
    assert np.all(kinds[20:30, 2:20] == SPLIT) and np.all(kinds[20:30, 30:46] == MERGED)
    assert np.all(kinds[34:38, 50:56] == FALSE)
    assert np.all(kinds[(truth == 0) & (pred == 0)] == 0)
    stack = object_error_map(np.stack([pred, truth]), np.stack([truth, truth]))  # plane by plane
    assert np.array_equal(stack[0], kinds) and np.all(stack[1][truth > 0] == MATCHED)


def test_object_ids_given_to_class_scores_are_refused_naming_the_objects_option():
    from napari_unetseg.core.errors import UserInputError
    from napari_unetseg.core.metrics import evaluate

    truth = np.zeros((64, 64), np.uint16)
    for k in range(12):
        truth[(k // 4) * 20 + 2 : (k // 4) * 20 + 12, (k % 4) * 16 + 2 : (k % 4) * 16 + 12] = k + 1
    mask = (truth > 0).astype(np.uint8)
    with pytest.raises(UserInputError, match="ground truth looks like object ids") as caught:
        evaluate(mask, truth)
    assert "--objects" in caught.value.worded({"objects": "--objects"})
    with pytest.raises(UserInputError, match="prediction looks like object ids"):
        evaluate(truth, mask)
    classes = np.zeros((64, 64), np.uint8)  # twelve classes predicted as twelve classes: scored
    classes[truth > 0] = truth[truth > 0] % 12 + 1
    assert len(evaluate(classes, classes, surface=False).classes) == 13
