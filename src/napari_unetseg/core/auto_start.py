"""Start from a shipped starter when one already fits the user's labels (``init="auto"``:
``unetseg train --init auto``, the Train dock's "Start from: auto"; not the default, see
docs/benchmarks.md, "Auto start": it helped where the starter had seen images of the
kind, and cost where it had seen one other set only).

A starter trained on many images of a kind (core/starters.py) is a better start than
random weights on images of that kind: 25 fine-tuning steps from it beat 500 from random
weights (docs/benchmarks.md, "Starters"). Which kind the user's images are, the labels
tell: each candidate starter predicts the labelled part of a few labelled slices, and
its fit is the mean over the classes of the share of each class's labelled pixels it
already gives that class (its balanced accuracy on the labels). The best starter with a
fit of at least :data:`~napari_unetseg.core.config.AUTO_START_FIT` is the starting point,
fine-tuned with the recipe of
:func:`~napari_unetseg.core.training_setup.fine_tuning_config`; if none fits, the run
starts from random weights, as before.

A starter is a candidate only where fine-tuning it would train what the user asked for:
the same architecture (the :class:`~napari_unetseg.core.config.ModelSpec` but for the
normalisation, which the starter keeps), one input channel, the same classes (each class
of the labels is a class of the starter, by name or else by label value, as fine-tuning
maps them) and class labels, not objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unetseg.core.checkpoint import LoadedModel, load_model
from napari_unetseg.core.class_names import name_classes
from napari_unetseg.core.config import AUTO_START, AUTO_START_FIT, ModelSpec, PredictConfig, TrainConfig
from napari_unetseg.core.data import find_class_values
from napari_unetseg.core.training_setup import head_rows

SLICES = 4  # the labelled slices (those with most labels) a starter predicts to be judged
MARGIN = 32  # px of context kept around the labels of each judged slice

NONE_APPLIES = (
    "starting from random weights: no starter has these classes, input channels and architecture "
    "(unetseg starters lists them)"
)
CANDIDATES: Sequence[Path] | None = None  # model files to judge instead of the shipped starters


@dataclass(frozen=True)
class StarterFit:
    """A starter judged on the labels: its name, model file, the model, and its fit (the
    mean over the classes of the share of labelled pixels it gives their class)."""

    name: str
    path: Path
    loaded: LoadedModel
    fit: float

    @property
    def fits(self) -> bool:
        """Whether the fit is good enough to start from (``AUTO_START_FIT``)."""
        return self.fit >= AUTO_START_FIT

    def note(self) -> str:
        """One line for the fronts: what the run starts from and why."""
        share = f"{100 * self.fit:.0f} %"
        if self.fits:
            return f"starting from starter {self.name}: it already gives {share} of the labels their class"
        return (
            f"starting from random weights: no starter fits these labels (best: {self.name}, "
            f"{share} of the labelled pixels right; {100 * AUTO_START_FIT:.0f} % needed)"
        )


def is_auto(init) -> bool:
    """Whether a run's ``init`` asks for the automatic choice."""
    return str(init) == AUTO_START


def candidates() -> dict[str, Path]:
    """The model files judged, by name: the shipped starters (or :data:`CANDIDATES`)."""
    if CANDIDATES is not None:
        return {Path(p).stem: Path(p) for p in CANDIDATES}
    from napari_unetseg.core.starters import available

    return {name: starter.path for name, starter in available().items()}


def best_starter(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spec: ModelSpec,
    config: TrainConfig,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> StarterFit | None:
    """The candidate starter that fits ``labels`` best (it may not :attr:`~StarterFit.fits`),
    or ``None`` when none is a candidate for this run (module text). ``images`` are
    ``(N, C, Y, X)`` stacks, ``labels`` their ``(N, Y, X)`` label stacks."""
    if config.objects or any(stack.shape[1] != 1 for stack in images):
        return None
    values = find_class_values(labels, config.label_mode)
    names = name_classes(values, class_names)
    judged = _judged_slices(images, labels, config.label_mode)
    best = None
    for name, path in candidates().items():
        loaded = load_model(path)
        starter_values = _starter_values(loaded, spec, values, names)
        if starter_values is None:
            continue
        fit = _fit(loaded, judged, values, starter_values, config.device)
        if best is None or fit > best.fit:
            best = StarterFit(name, path, loaded, fit)
    return best


def _starter_values(
    loaded: LoadedModel, spec: ModelSpec, values: Sequence[int], names: Sequence[str]
) -> list[int] | None:
    """For each class of the labels, the starter's label value of it; ``None`` when the
    starter is no candidate (another architecture, channels, classes, or objects)."""
    if loaded.train_config.get("objects") or loaded.spec.in_channels != 1:
        return None
    same = loaded.spec.replace(
        normalization=spec.normalization, in_channels=spec.in_channels, num_classes=spec.num_classes
    )
    if same != spec or len(values) != len(loaded.class_values):
        return None
    rows = head_rows(loaded, values, names)
    if rows is None:
        return [int(v) for v in loaded.class_values]
    if None in rows or len(set(rows)) != len(rows):
        return None
    return [int(loaded.class_values[row]) for row in rows]


def _judged_slices(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], label_mode: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The :data:`SLICES` slices with most labelled pixels, each ``(image (1, C, Y, X),
    labels (Y, X))`` cut to its labels' bounding box and :data:`MARGIN` px around it."""
    counts = []
    for s, stack in enumerate(labels):
        painted = (stack > 0) if label_mode == "sparse" else np.ones(stack.shape, bool)
        per_slice = painted.reshape(len(stack), -1).sum(1)
        counts += [(int(n), s, i) for i, n in enumerate(per_slice) if n]
    chosen = sorted(counts, reverse=True)[:SLICES]
    out = []
    for _, s, i in chosen:
        plane = np.asarray(labels[s][i])
        y0, x0, (y1, x1) = 0, 0, plane.shape
        if label_mode == "sparse":
            ys, xs = np.nonzero(plane)
            y0, x0 = max(int(ys.min()) - MARGIN, 0), max(int(xs.min()) - MARGIN, 0)
            y1, x1 = int(ys.max()) + MARGIN + 1, int(xs.max()) + MARGIN + 1
        image = np.asarray(images[s][i : i + 1, :, y0:y1, x0:x1])
        out.append((image, plane[y0:y1, x0:x1]))
    return out


def _fit(
    loaded: LoadedModel,
    judged: list[tuple[np.ndarray, np.ndarray]],
    values: Sequence[int],
    starter_values: Sequence[int],
    device: str,
) -> float:
    """The starter's balanced accuracy on the judged slices' labels: the mean over the
    classes of the share of each class's labelled pixels it predicts as that class."""
    from napari_unetseg.core.prediction import predict_stack

    hits, totals = np.zeros(len(values)), np.zeros(len(values))
    for image, plane in judged:
        predicted = predict_stack(loaded, image, PredictConfig(device=device)).labels[0]
        for k, (value, target) in enumerate(zip(values, starter_values)):
            where = plane == value
            totals[k] += where.sum()
            hits[k] += (predicted[where] == target).sum()
    present = totals > 0
    return float(np.mean(hits[present] / totals[present])) if present.any() else 0.0
