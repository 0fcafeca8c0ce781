"""The Evaluate dock's object side (no Qt): what its table, headline and error layer
show for object scores (:mod:`~napari_unetseg.core.objects`, :mod:`~napari_unetseg.core.object_errors`)."""

from __future__ import annotations

import numpy as np

from napari_unetseg.core.object_errors import OBJECT_ERRORS

OBJECT_ERROR_LAYER = "object errors"
OBJECT_ERROR_COLORS = {0: "transparent", 1: "#2ca02c", 2: "#d62728", 3: "#1f77b4", 4: "#ff7f0e",
                       5: "#9467bd", None: "transparent"}  # fmt: skip
OBJECT_ROWS = (("n_true", "true objects"), ("n_pred", "predicted objects"), ("tp", "matched (IoU >= 0.5)"),
               ("fp", "false"), ("fn", "missed"), ("splits", "split true objects"),
               ("merges", "merging predictions"), ("precision", "precision"), ("recall", "recall"),
               ("f1", "F1 @ IoU 0.5"), ("ap", "AP @ IoU 0.5:0.95"),
               ("panoptic_quality", "panoptic quality"))  # fmt: skip


def object_legend() -> str:
    """The error layer's colours, as rich text."""
    return "  ".join(
        f'<span style="color:{OBJECT_ERROR_COLORS[v]}">&#9632;</span> {OBJECT_ERRORS[v]}' for v in range(1, 6)
    )


def object_table(total: dict) -> list[tuple[str, str]]:
    """``(row title, text)`` for every object score of ``ObjectEvaluation.total()``."""
    rows = []
    for key, title in OBJECT_ROWS:
        value = total[key]
        if isinstance(value, (int, np.integer)):
            text = str(int(value))
        else:
            text = f"{value:.3f}" if np.isfinite(value) else "n/a"
        rows.append((title, text))
    return rows


def object_headline(total: dict) -> str:
    """``"object F1 0.872 · AP 0.567 (2084 true, 2002 found, 12 merges, 3 splits)"``."""
    counts = f"{total['n_true']} true, {total['n_pred']} found"
    counts += f", {total['merges']} merges, {total['splits']} splits"
    return f"object F1 {total['f1']:.3f} · AP {total['ap']:.3f} ({counts})"


def error_layer_options() -> dict:
    """The keyword arguments of the object error layer (colours, names of the kinds)."""
    return {
        "colormap": OBJECT_ERROR_COLORS,
        "features": {"index": list(range(len(OBJECT_ERRORS))), "error": list(OBJECT_ERRORS)},
        "metadata": {"unetseg": "object errors"},
        "opacity": 0.6,
    }
