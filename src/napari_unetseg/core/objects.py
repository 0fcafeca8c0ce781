"""Object (instance) scores: how well predicted objects match true ones, one to one.

Both images hold one id per object (0 = background), 2D or 3D. The overlaps come from
scikit-image's :func:`~skimage.metrics.contingency_table` and every pair of objects that
overlap gets its IoU (intersection over union).

**Matching.** At an IoU threshold ``t`` a true and a predicted object may be matched when
their IoU is at least ``t``; each object is matched at most once, and the matching is the
one with the most matched pairs, and among those the largest total IoU (as StarDist's
``matching``). It is found by :func:`scipy.optimize.linear_sum_assignment` on each
connected group of eligible pairs; for ``t > 0.5`` an object has at most one eligible
partner, so the groups are single pairs.

**Scores** at ``t`` (matched pairs TP, unmatched predictions FP, unmatched true objects FN):
precision TP / (TP + FP), recall TP / (TP + FN), F1 2TP / (2TP + FP + FN), and the DSB2018
"average precision" TP / (TP + FP + FN); ``ap`` is its mean over t = 0.50, 0.55, ..., 0.95.
Panoptic quality at 0.5: the sum of the matched IoUs over TP + FP / 2 + FN / 2. A ratio
with nothing to count (no objects on either side) is NaN.

**Splits and merges.** A true object is *split* when it holds more than half of each of two
or more predicted objects; a predicted object is a *merge* when it holds more than half of
each of two or more true objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from skimage.measure import label as connected_components
from skimage.metrics import contingency_table
from skimage.segmentation import relabel_sequential

from napari_unetseg.core.errors import UserInputError

AP_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.50, 0.55, ..., 0.95
MAX_ID = 2**32 - 1


@dataclass(frozen=True)
class Overlaps:
    """The objects of two instance images and how they overlap.

    ``true_area[i]`` and ``pred_area[j]`` are the sizes of true object ``i + 1`` and
    predicted object ``j + 1`` (ids renumbered 1..N in the order of the original ids);
    ``pairs`` lists every overlapping pair as rows ``(i, j)`` with its ``intersection``
    and ``iou``.
    """

    true_area: np.ndarray
    pred_area: np.ndarray
    pairs: np.ndarray
    intersection: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class ObjectScores:
    """Object scores of a prediction (see the module text for the definitions)."""

    n_true: int
    n_pred: int
    tp: int  # at IoU 0.5
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    panoptic_quality: float
    mean_matched_iou: float
    ap: float  # mean of ap_at over AP_THRESHOLDS
    ap_at: dict[float, float] = field(default_factory=dict)
    splits: int = 0
    merges: int = 0

    def to_dict(self) -> dict:
        """The scores as one flat row (``ap_0.50`` ... for the AP per threshold); NaN as ``None``."""
        row = {k: v for k, v in self.__dict__.items() if k != "ap_at"}
        row.update({f"ap_{t:.2f}": v for t, v in self.ap_at.items()})
        return _nan_to_none(row)


def _nan_to_none(row: dict) -> dict:
    return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}


def check_instances(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as non-negative integer object ids, or a clear refusal."""
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.integer):
        raise UserInputError(f"the {what} must hold integer object ids (0 = background), not {image.dtype}")
    if image.size and image.min() < 0:
        raise UserInputError(f"the {what} holds negative ids: object ids are 1, 2, ... (0 = background)")
    if image.size and int(image.max()) > MAX_ID:
        raise UserInputError(f"the {what} holds ids above 2**32 - 1: renumber the objects 1, 2, ...")
    return image


def check_pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as object ids of the same shape, or a clear refusal."""
    pred, truth = check_instances(pred, "prediction"), check_instances(truth, "ground truth")
    if truth.shape != pred.shape:
        shapes = f"the ground truth {truth.shape} and the prediction {pred.shape}"
        raise UserInputError(f"{shapes} differ in shape")
    return truth, pred


def overlaps(truth: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Every pair of overlapping objects of ``truth`` and ``pred`` with its IoU."""
    return _overlaps(*check_pair(truth, pred))


def _overlaps(truth: np.ndarray, pred: np.ndarray) -> Overlaps:
    truth = relabel_sequential(truth)[0]
    pred = relabel_sequential(pred)[0]
    table = sparse.coo_matrix(contingency_table(truth, pred))
    true_area = np.bincount(truth.ravel())[1:]
    pred_area = np.bincount(pred.ravel())[1:]
    keep = (table.row > 0) & (table.col > 0)
    rows, cols = table.row[keep] - 1, table.col[keep] - 1
    inter = table.data[keep].astype(np.int64)
    iou = inter / (true_area[rows] + pred_area[cols] - inter)
    return Overlaps(true_area, pred_area, np.stack([rows, cols], 1), inter, iou)


def match(found: Overlaps, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matching at ``threshold``: the ``(i, j)`` rows of the matched pairs
    and their IoUs (most pairs first, then the largest total IoU)."""
    eligible = found.iou >= threshold
    pairs, iou = found.pairs[eligible], found.iou[eligible]
    if not len(pairs):
        return pairs, iou
    n_true = len(found.true_area)
    nodes = np.concatenate([pairs[:, 0], n_true + pairs[:, 1]])
    graph = sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], n_true + pairs[:, 1])),
        shape=(n_true + len(found.pred_area),) * 2,
    )
    _, group = sparse.csgraph.connected_components(graph, directed=False)
    chosen = []
    for g in np.unique(group[nodes]):
        members = np.flatnonzero(group[pairs[:, 0]] == g)
        if len(members) == 1:
            chosen.append(members[0])
            continue
        rows, row_index = np.unique(pairs[members, 0], return_inverse=True)
        cols, col_index = np.unique(pairs[members, 1], return_inverse=True)
        # each pair is worth 1 (more pairs first) plus its IoU / (2 * pairs) (< 1 in all)
        gain = np.zeros((len(rows), len(cols)))
        gain[row_index, col_index] = 1 + iou[members] / (2 * len(members))
        r, c = linear_sum_assignment(gain, maximize=True)
        lookup = {(a, b): m for a, b, m in zip(row_index, col_index, members)}
        chosen += [lookup[(a, b)] for a, b in zip(r, c) if gain[a, b] > 0]
    chosen = np.sort(np.asarray(chosen, dtype=int))
    return pairs[chosen], iou[chosen]


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def holders(found: Overlaps, by_true: bool) -> np.ndarray:
    """The objects of one side (indices into ``true_area`` / ``pred_area``) that hold more
    than half of each of two or more objects of the other: split true objects
    (``by_true``) or merging predicted ones."""
    side, other_area = (0, found.pred_area) if by_true else (1, found.true_area)
    other = found.pairs[:, 1 - side]
    holds = found.intersection * 2 > other_area[other]
    ids, counts = np.unique(found.pairs[holds, side], return_counts=True)
    return ids[counts >= 2]


def object_scores(truth: np.ndarray, pred: np.ndarray) -> ObjectScores:
    """Object scores of the instance image ``pred`` against ``truth`` (module text)."""
    return _scores(overlaps(truth, pred))


def _scores(found: Overlaps) -> ObjectScores:
    n_true, n_pred = len(found.true_area), len(found.pred_area)
    matches = {t: match(found, t) for t in AP_THRESHOLDS}
    ap_at = {t: _ratio(len(pairs), n_true + n_pred - len(pairs)) for t, (pairs, _) in matches.items()}
    pairs, iou = matches[0.5]
    tp = len(pairs)
    fp, fn = n_pred - tp, n_true - tp
    return ObjectScores(
        n_true=n_true,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, n_pred),
        recall=_ratio(tp, n_true),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        panoptic_quality=_ratio(float(iou.sum()), tp + fp / 2 + fn / 2),
        mean_matched_iou=_ratio(float(iou.sum()), tp),
        ap=float(np.mean(list(ap_at.values()))),
        ap_at=ap_at,
        splits=len(holders(found, by_true=True)),
        merges=len(holders(found, by_true=False)),
    )


SUMMED = ("n_true", "n_pred", "tp", "fp", "fn", "splits", "merges")
AVERAGED = ("precision", "recall", "f1", "panoptic_quality", "mean_matched_iou", "ap")
TABLE = (*SUMMED, "precision", "recall", "f1", "ap", "panoptic_quality")


@dataclass(frozen=True)
class ObjectEvaluation:
    """Object scores of each image (each 2D plane, or one 3D volume), their sum (counts)
    and their mean over the images (the ratios, as the DSB2018 score does)."""

    images: tuple[ObjectScores, ...]
    volume: bool

    def total(self) -> dict[str, float]:
        row: dict[str, float] = {k: int(sum(getattr(s, k) for s in self.images)) for k in SUMMED}
        for key in AVERAGED:
            values = [getattr(s, key) for s in self.images if np.isfinite(getattr(s, key))]
            row[key] = float(np.mean(values)) if values else float("nan")
        return row

    def to_dict(self) -> dict:
        return {
            "volume": self.volume,
            "all": _nan_to_none(self.total()),
            "per_image": [s.to_dict() for s in self.images],
        }


def pieces_per_id(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids of ``image`` (above 0) and into how many separate pieces each falls
    (8-connected; 18-connected in 3D)."""
    pieces = connected_components(image, connectivity=2)
    owner = np.zeros(int(pieces.max()) + 1, image.dtype)
    owner[pieces.ravel()] = image.ravel()
    return np.unique(owner[1:], return_counts=True)


def looks_like_classes(truth: np.ndarray) -> str | None:
    """Why ``truth`` looks like a class mask rather than object ids (``None`` if it does
    not): at most three values, covering at least three times as many separate pieces."""
    values = np.unique(truth[truth > 0])
    if not 0 < len(values) <= 3:
        return None
    pieces = int(connected_components(truth > 0, connectivity=1).max())
    if pieces < 3 * len(values):
        return None
    found = f"{len(values)} value(s): {', '.join(str(v) for v in values)}; {pieces} separate pieces"
    return f"the ground truth looks like a class mask ({found})"


def evaluate_objects(pred: np.ndarray, truth: np.ndarray, volume: bool = False) -> ObjectEvaluation:
    """Score instance images: ``volume`` scores the whole array as one image (3D objects),
    else every 2D plane (the last two axes) on its own."""
    planes = paired_images(*check_pair(truth, pred), volume)
    for true_plane, _ in planes:
        why = looks_like_classes(true_plane)
        if why:
            raise UserInputError(
                why,
                "give instance labels (one id per object)",
                ("leave out the flag to score classes", "objects"),
            )
    return ObjectEvaluation(tuple(_scores(_overlaps(t, p)) for t, p in planes), volume)


def paired_images(truth: np.ndarray, pred: np.ndarray, volume: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (truth, prediction) images to score: the whole arrays (``volume``), or views of
    each 2D plane (the last two axes)."""
    if volume:
        return [(truth, pred)]
    return list(zip(truth.reshape(-1, *truth.shape[-2:]), pred.reshape(-1, *pred.shape[-2:])))


def format_object_table(evaluation: ObjectEvaluation) -> str:
    """A plain-text table: one row per image (when there are several) and one for all."""
    header = f"{'image':>8} " + " ".join(f"{'PQ' if k == 'panoptic_quality' else k:>9}" for k in TABLE)
    lines = [header, "-" * len(header)]

    def fmt(x) -> str:
        if x is None:
            return f"{'n/a':>9}"
        if isinstance(x, (int, np.integer)):
            return f"{x:>9d}"
        return f"{x:>9.4f}" if np.isfinite(x) else f"{'n/a':>9}"

    total = evaluation.total()
    rows = (
        [(str(i), s.to_dict()) for i, s in enumerate(evaluation.images)] if len(evaluation.images) > 1 else []
    )
    for name, row in [*rows, ("all", total)]:
        lines.append(f"{name:>8} " + " ".join(fmt(row[k]) for k in TABLE))
    counts = f"{total['n_true']} true objects, {total['n_pred']} predicted"
    lines.append(f"headline: object F1@0.5 {total['f1']:.4f}, AP@[0.5:0.95] {total['ap']:.4f} ({counts})")
    return "\n".join(lines)
