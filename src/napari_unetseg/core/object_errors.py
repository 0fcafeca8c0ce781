"""Where object predictions go wrong: an error view of each object, and the check that
keeps object ids out of class scores (issue 23).

The view (:func:`object_error_map`) marks the pixels of each object with its kind
(:data:`OBJECT_ERRORS`), from the one-to-one matching at IoU 0.5 of
:mod:`~napari_unetseg.core.objects`:

* *matched*: a predicted object matched to a true one;
* *false*: a predicted object matched to none;
* *missed*: a true object matched to none, where nothing was predicted over it;
* *split*: the predicted pieces over a true object that holds more than half of each
  of two or more of them;
* *merged*: a predicted object that holds more than half of each of two or more true objects.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential

from napari_unetseg.core.objects import check_pair, holders, match, overlaps, paired_images, pieces_per_id

OBJECT_ERRORS = ("", "matched", "false", "missed", "split", "merged")
MATCHED, FALSE, MISSED, SPLIT, MERGED = 1, 2, 3, 4, 5


def object_error_map(pred: np.ndarray, truth: np.ndarray, volume: bool = False) -> np.ndarray:
    """The kind of every object's pixels (``uint8``, values of :data:`OBJECT_ERRORS`),
    plane by plane or as one volume (as :func:`~napari_unetseg.core.objects.evaluate_objects`)."""
    truth, pred = check_pair(truth, pred)
    out = np.zeros(truth.shape, np.uint8)
    views = paired_images(truth, out, volume)
    for (true_image, pred_image), (_, kinds) in zip(paired_images(truth, pred, volume), views):
        kinds[...] = _kinds(relabel_sequential(true_image)[0], relabel_sequential(pred_image)[0])
    return out


def _kinds(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    found = overlaps(truth, pred)
    pairs, _ = match(found, 0.5)
    matched_true = np.zeros(len(found.true_area) + 1, bool)
    matched_true[pairs[:, 0] + 1] = True
    pred_kind = np.full(len(found.pred_area) + 1, FALSE, np.uint8)
    pred_kind[0] = 0
    pred_kind[pairs[:, 1] + 1] = MATCHED
    pred_kind[holders(found, by_true=False) + 1] = MERGED
    kinds = pred_kind[pred]
    split_true = np.zeros(len(found.true_area) + 1, bool)
    split_true[holders(found, by_true=True) + 1] = True
    kinds[split_true[truth] & (pred > 0)] = SPLIT
    kinds[(truth > 0) & ~matched_true[truth] & ~split_true[truth] & (pred == 0)] = MISSED
    return kinds


def looks_like_objects(truth: np.ndarray, pred: np.ndarray) -> str | None:
    """Why a pair given to class scores looks like object ids (``None`` if it does not):
    on a plane, one side holds ten or more values the other lacks, nearly all of them
    (80 %) one connected piece each, as the objects of an instance image are."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    for side, image, other in (("ground truth", truth, pred), ("prediction", pred, truth)):
        for plane, other_plane in zip(
            image.reshape(-1, *image.shape[-2:])[:8], other.reshape(-1, *other.shape[-2:])
        ):
            values = np.setdiff1d(np.unique(plane), np.unique(other_plane))
            values = values[values > 0]
            if len(values) < 10:
                continue
            ids, per_id = pieces_per_id(plane)
            if np.mean(per_id[np.isin(ids, values)] == 1) >= 0.8:
                return f"the {side} looks like object ids ({len(values)} values, each one separate piece)"
    return None
