"""Segmentation metrics per class and per slice.

For every label value ``v`` (the union of the values in prediction and truth, unless
``classes`` is given) and every 2D slice, pixels are counted as true positives
(``pred == v`` and ``truth == v``), false positives and false negatives; from these:

* Dice = F1 = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN),
  precision = TP / (TP + FP), recall = TP / (TP + FN);
* Hausdorff distance (HD) and HD95 between the *boundaries* of the two masks
  (boundary = mask pixels with a 4-neighbour outside the mask, the image edge counting
  as outside, as in MONAI), in pixels, per 2D slice.
  HD is the largest distance from a boundary pixel of one mask to the nearest boundary
  pixel of the other; HD95 is the 95th percentile of those distances (the larger of
  the two directed 95th percentiles, as MONAI computes it).

Whole-stack values pool the counts (and boundary distances) of all slices.

Empty classes (documented convention; means over classes skip NaN):

* truth and prediction both empty: Dice = IoU = precision = recall = F1 = 1 and
  HD = HD95 = 0 (nothing to find, nothing found);
* only the truth has pixels: Dice = IoU = F1 = recall = 0, precision = NaN (nothing
  was predicted), HD = HD95 = NaN (undefined);
* only the prediction has pixels: Dice = IoU = F1 = precision = 0, recall = NaN,
  HD = HD95 = NaN.

A whole-stack HD is NaN as soon as one slice has the class in only one of the two.

Ignored values (``ignore``) are ground-truth values whose pixels are left out of every
metric (as an "unlabelled" or "void" value is): what is predicted there counts for no class.

The headline (:meth:`EvaluationResult.headline`) is the mean over the foreground classes:
every class but the one named "background" (or, when the classes have no names, the
lowest value), because a large, easy background lifts a mean over all classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_unetseg.core.class_names import background_value, display_name
from napari_unetseg.core.errors import UserInputError

METRIC_NAMES = ("dice", "iou", "precision", "recall", "f1", "hausdorff", "hd95")


@dataclass
class Counts:
    """Pixel counts and boundary distances of one class in one slice (or pooled)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    distances_pt: list[np.ndarray] = field(default_factory=list)  # prediction -> truth
    distances_tp: list[np.ndarray] = field(default_factory=list)  # truth -> prediction
    undefined_hd: bool = False

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.distances_pt += other.distances_pt
        self.distances_tp += other.distances_tp
        self.undefined_hd |= other.undefined_hd

    def dice(self) -> float:
        """2TP / (2TP + FP + FN); NaN when the class is in neither mask."""
        tp, fp, fn = self.tp, self.fp, self.fn
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")

    def metrics(self) -> dict[str, float]:
        tp, fp, fn = self.tp, self.fp, self.fn
        if tp + fp + fn == 0:
            return dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0, f1=1.0, hausdorff=0.0, hd95=0.0)
        dice = self.dice()
        out = {
            "dice": dice,
            "iou": tp / (tp + fp + fn),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "f1": dice,
        }
        out.update(self._surface())
        return out

    def _surface(self) -> dict[str, float]:
        if self.undefined_hd:
            return {"hausdorff": float("nan"), "hd95": float("nan")}
        pt = np.concatenate(self.distances_pt) if self.distances_pt else np.zeros(0)
        tp_ = np.concatenate(self.distances_tp) if self.distances_tp else np.zeros(0)
        if not len(pt) and not len(tp_):
            return {"hausdorff": 0.0, "hd95": 0.0}
        hd = max(pt.max(initial=0), tp_.max(initial=0))
        hd95 = max(np.percentile(pt, 95) if len(pt) else 0.0, np.percentile(tp_, 95) if len(tp_) else 0.0)
        return {"hausdorff": float(hd), "hd95": float(hd95)}


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with at least one 4-neighbour outside it (image edge = outside)."""
    from scipy import ndimage  # here, not at the top: the trainer imports this module, and
    # importing scipy.ndimage in the training thread froze the viewer when a run started

    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    return mask & ~eroded


def _directed_distances(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distance from each ``source`` pixel to the nearest ``target`` pixel."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(~target)[source]


def slice_counts(
    pred: np.ndarray, truth: np.ndarray, value: int, surface: bool = True, valid: np.ndarray | None = None
) -> Counts:
    """Counts for one class in one 2D slice (only the ``valid`` pixels, when given)."""
    p, t = pred == value, truth == value
    if valid is not None:
        p, t = p & valid, t & valid
    counts = Counts(tp=int((p & t).sum()), fp=int((p & ~t).sum()), fn=int((~p & t).sum()))
    if surface:
        if p.any() and t.any():
            bp, bt = boundary(p), boundary(t)
            counts.distances_pt.append(_directed_distances(bp, bt))
            counts.distances_tp.append(_directed_distances(bt, bp))
        elif p.any() or t.any():
            counts.undefined_hd = True
    return counts


@dataclass
class EvaluationResult:
    """Per-class whole-stack metrics, per-slice metrics, and means over classes."""

    classes: tuple[int, ...]
    per_class: dict[int, dict[str, float]]
    per_slice: list[dict[int, dict[str, float]]]
    mean: dict[str, float]
    names: dict[int, str] = field(default_factory=dict)  # label value -> class name, where known
    warnings: tuple[str, ...] = ()  # results that are probably not what the user meant

    def name_of(self, value: int) -> str:
        """The class's name, or ``"class {value}"``."""
        return display_name(self.names, value)

    def foreground(self) -> tuple[int, ...]:
        """The classes the headline averages: all but the background (see the module notes)."""
        background = background_value(self.classes, self.names)
        rest = tuple(v for v in self.classes if v != background)
        return rest or self.classes

    def headline(self, metric: str = "dice") -> str:
        """``"nucleus Dice 0.789"``, or ``"mean Dice 0.72 (membrane 0.70, synapse 0.74)"``."""
        label = "Dice" if metric == "dice" else metric
        values = {v: self.per_class[v][metric] for v in self.foreground()}
        if len(values) == 1:
            ((value, score),) = values.items()
            return f"{self.name_of(value)} {label} {score:.3f}"
        parts = ", ".join(f"{self.name_of(v)} {score:.3f}" for v, score in values.items())
        return f"mean {label} {np.nanmean(list(values.values())):.3f} ({parts})"

    def to_dict(self) -> dict:
        """JSON-friendly: NaN becomes ``None``; class keys are the label values as strings."""

        def clean(d: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if np.isnan(v) else float(v)) for k, v in d.items()}

        return {
            "classes": list(self.classes),
            "class_names": {str(v): self.name_of(v) for v in self.classes},
            "foreground": list(self.foreground()),
            "warnings": list(self.warnings),
            "per_class": {str(v): clean(m) for v, m in self.per_class.items()},
            "mean": clean(self.mean),
            "per_slice": [{str(v): clean(m) for v, m in s.items()} for s in self.per_slice],
            "dice": {str(v): m["dice"] for v, m in self.per_class.items()},
            "iou": {str(v): m["iou"] for v, m in self.per_class.items()},
        }


def _as_slices(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    return array.reshape((-1, *array.shape[-2:]))


def evaluate(
    prediction: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[int] | None = None,
    ignore: Sequence[int] = (),
    surface: bool = True,
    names: dict[int, str] | None = None,
) -> EvaluationResult:
    """Dice, IoU, precision, recall, F1, HD and HD95 per class, per slice and on average.

    Parameters
    ----------
    prediction, truth
        Integer label images of the same shape: 2D or stacks of 2D slices.
    classes
        Label values to score; default: every value present in either image.
    ignore
        Ground-truth values whose pixels are left out of every metric (e.g. ``[0]``
        for "unlabelled"); they are not scored as classes either.
    surface
        Compute the boundary distances (HD, HD95); they cost a distance transform per
        class and slice.
    names
        Label value -> class name, for the table, the headline and the files.
    """
    if prediction.shape != truth.shape:
        raise UserInputError(
            f"prediction shape {prediction.shape} differs from ground truth shape {truth.shape}"
        )
    for name, array in (("prediction", prediction), ("ground truth", truth)):
        if np.asarray(array).dtype.kind not in "iub":
            raise UserInputError(f"the {name} must be an integer label image, got {array.dtype}")
    from napari_unetseg.core.object_errors import looks_like_objects

    why = looks_like_objects(truth, prediction)
    if why:
        raise UserInputError(why, ("score them as objects", "objects"))
    pred_s, truth_s = _as_slices(prediction), _as_slices(truth)
    classes = scored_classes(pred_s, truth_s, classes, ignore)
    pooled = {v: Counts() for v in classes}
    per_slice = []
    for p, t in zip(pred_s, truth_s):
        valid = ~np.isin(t, list(ignore)) if len(ignore) else None
        row = {}
        for v in classes:
            c = slice_counts(p, t, v, surface, valid)
            pooled[v].add(c)
            row[v] = c.metrics()
        per_slice.append(row)
    per_class = {v: pooled[v].metrics() for v in classes}
    mean = {}
    for name in METRIC_NAMES:
        values = np.array([per_class[v][name] for v in classes], dtype=float)
        mean[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    if not surface:
        for table in (per_class, mean, *[r for s in per_slice for r in s.values()]):
            table.pop("hausdorff", None)
            table.pop("hd95", None)
    names = {int(v): str(n) for v, n in (names or {}).items() if n}
    warnings = numbering_warnings(pred_s, truth_s, ignore)
    return EvaluationResult(classes, per_class, per_slice, mean, names, warnings)


def scored_classes(
    prediction: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[int] | None = None,
    ignore: Sequence[int] = (),
) -> tuple[int, ...]:
    """The label values :func:`evaluate` scores: ``classes``, or every value in either image,
    without the ``ignore``d ones."""
    if classes is None:
        classes = np.union1d(np.unique(prediction), np.unique(truth)).tolist()
    classes = tuple(int(c) for c in classes if int(c) not in set(ignore))
    if not classes:
        raise UserInputError(
            "no classes left to evaluate once the ignored values are left out",
            ("ignore fewer values", "ignore"),
        )
    return classes


def numbering_warnings(
    prediction: np.ndarray, truth: np.ndarray, ignore: Sequence[int] = ()
) -> tuple[str, ...]:
    """Warn when the two images seem to number the classes differently: most of the
    (not ignored) truth pixels of a value lie under another predicted value (e.g. truth
    0/1 against predictions 1/2), so the scores compare the wrong classes."""
    valid = ~np.isin(truth, list(ignore)) if len(ignore) else np.ones(truth.shape, bool)
    t, p = truth[valid].astype(np.int64), prediction[valid].astype(np.int64)
    if t.size == 0:
        return ()
    values, t_index = np.unique(t, return_inverse=True)
    pred_values, p_index = np.unique(p, return_inverse=True)
    table = np.zeros((len(values), len(pred_values)), np.int64)
    np.add.at(table, (t_index.ravel(), p_index.ravel()), 1)
    best = pred_values[table.argmax(1)]
    moved = best != values
    if table[moved].max(1, initial=0).sum() < 0.5 * t.size:
        return ()
    pairs = ", ".join(f"truth {a} ~ prediction {b}" for a, b in zip(values.tolist(), best.tolist()) if a != b)
    return (
        f"the prediction and the ground truth seem to number the classes differently ({pairs}): "
        "the scores compare different classes; relabel one of them",
    )


def masked_dice(pairs, num_classes: int) -> np.ndarray:
    """Dice per class index ``0..K-1`` pooled over ``(prediction, truth)`` pairs, NaN for a
    class in neither (training's validation: a class nobody painted on the held-out
    slices, and none predicted there, says nothing). Pixels to leave out are ``-1`` in
    both arrays (unpainted)."""
    pooled = [Counts() for _ in range(num_classes)]
    for pred, truth in pairs:
        for k in range(num_classes):
            pooled[k].add(slice_counts(pred, truth, k, surface=False))
    return np.array([c.dice() for c in pooled])


ERROR_KINDS = ("", "true positive", "false positive", "false negative")


def error_map(
    prediction: np.ndarray, truth: np.ndarray, value: int, ignore: Sequence[int] = ()
) -> np.ndarray:
    """Where class ``value`` is right and wrong: 1 = true positive, 2 = false positive,
    3 = false negative (:data:`ERROR_KINDS`), 0 elsewhere (and where the truth is ``ignore``d)."""
    pred, true = np.asarray(prediction) == value, np.asarray(truth) == value
    if len(ignore):
        pred = pred & ~np.isin(truth, list(ignore))
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[pred & true] = 1
    out[pred & ~true] = 2
    out[~pred & true] = 3
    return out


def format_table(result: EvaluationResult) -> str:
    """A plain-text table: one row per class (value and name) and one for the mean."""
    names = [n for n in METRIC_NAMES if n in result.mean]
    width = max(8, *(len(f"{v} {result.name_of(v)}") for v in result.classes))
    header = f"{'class':>{width}} " + " ".join(f"{n:>10}" for n in names)
    lines = [header, "-" * len(header)]

    def fmt(x: float) -> str:
        return f"{x:>10.4f}" if np.isfinite(x) else f"{'n/a':>10}"

    for v in result.classes:
        label = f"{v} {result.names[v]}" if v in result.names else str(v)
        lines.append(f"{label:>{width}} " + " ".join(fmt(result.per_class[v][n]) for n in names))
    lines.append(f"{'mean':>{width}} " + " ".join(fmt(result.mean[n]) for n in names))
    lines.append(f"headline: {result.headline()}")
    return "\n".join(lines)
