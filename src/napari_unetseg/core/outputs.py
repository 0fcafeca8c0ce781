"""Where ``unetseg predict`` writes each input's results, and the writers that do it.

A TIFF input gives ``OUT_DIR/<name>.tif`` (and ``<name>_probabilities.tif``), a zarr or
OME-Zarr input ``OUT_DIR/<name>.ome.zarr`` (and ``<name>_probabilities.ome.zarr``), with
the input's axes and pixel sizes; with ``label_name`` an OME-Zarr input takes its labels
into its own ``labels/<label_name>`` instead. Every writer fills its output slice by
slice and puts it in place only when it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import StackLayout, TiffSliceWriter, check_output_folder, read_image
from napari_unetseg.core.zarr_io import CHUNK, ZarrImage, ZarrSliceWriter, is_zarr, open_zarr, quiet


@dataclass(frozen=True)
class Target:
    """One input's outputs: its labels (a file or store), its probabilities (or None),
    and ``labels_of``, the OME-Zarr input whose ``labels/`` group takes the labels."""

    source: Path
    labels: Path
    probabilities: Path | None
    labels_of: Path | None = None

    def existing(self) -> list[Path]:
        return [p for p in (self.labels, self.probabilities) if p is not None and p.exists()]


def plan_outputs(
    inputs: Sequence[str | Path],
    out_dir: str | Path | None,
    probabilities: bool = False,
    label_name: str | None = None,
) -> list[Target]:
    """Each input's :class:`Target`; refuses missing inputs and colliding names."""
    if out_dir is None and label_name is None:
        raise UserInputError(
            "no output is given",
            ("give an output folder", "out"),
            ("a name for labels inside OME-Zarr inputs", "label_name"),
        )
    if out_dir is None and probabilities:
        raise UserInputError("needs an output folder", ("give one", "out"), subject="probabilities")
    out = None if out_dir is None else check_output_folder(out_dir)
    sources = [Path(p) for p in inputs]
    for path in sources:
        if not (path.is_file() or is_zarr(path)):
            raise UserInputError(f"input {path} does not exist or is not a file or zarr store")
        if label_name is not None:
            _check_labels_group(path)
    targets = []
    for path in sources:
        name, suffix = path.name.split(".")[0], ".ome.zarr" if is_zarr(path) else ".tif"
        probs = out / f"{name}_probabilities{suffix}" if probabilities else None
        if label_name is not None:
            targets.append(Target(path, path / "labels" / label_name, probs, labels_of=path))
        else:
            targets.append(Target(path, out / f"{name}{suffix}", probs))
    outputs = [p for t in targets for p in (t.labels, t.probabilities) if p is not None]
    duplicates = sorted({p for p in outputs if outputs.count(p) > 1})
    if duplicates:
        name = duplicates[0].name.split(".")[0]
        raise UserInputError(f"several inputs are named {name!r}: their outputs would collide")
    return targets


def _check_labels_group(path: Path) -> None:
    """Refuse ``label_name`` for an input that is no OME-Zarr image, or whose ``labels/``
    group cannot take a new labels image."""
    if not _is_ome_zarr(path):
        raise UserInputError(f"needs OME-Zarr inputs: {path} is none", subject="label_name")
    group = path / "labels"
    reason = None
    if group.exists() and not group.is_dir():
        reason = f"{group} is not a folder"
    elif not os.access(group if group.exists() else path, os.W_OK | os.X_OK):
        reason = "permission denied"
    if reason:
        raise UserInputError(
            f"cannot write labels into {path} ({reason})", ("write them to an output folder instead", "out")
        )


def _is_ome_zarr(path: Path) -> bool:
    from ome_zarr.io import parse_url

    with quiet():
        return is_zarr(path) and parse_url(str(path), mode="r") is not None


def open_input(path: Path, axes: str | None) -> tuple[object, str, ZarrImage | None]:
    """The input image (lazily: a memory map or a dask array), its axes, and its zarr
    description when it is a zarr store."""
    if is_zarr(path):
        image = open_zarr(path, axes)
        return image.data, image.axes, image
    data, found = read_image(path, axes, lazy=True)
    return data, found, None


def open_writers(
    target: Target,
    layout: StackLayout,
    dtype: np.dtype,
    n_classes: int,
    class_names: dict[int, str],
    zarr_image: ZarrImage | None,
    part_of: Callable[[Path], Path] | None = None,
    chunk: int = CHUNK,
) -> dict:
    """The ``labels_out`` (and ``probabilities_out``) writers of one input.

    ``part_of`` names each output's unfinished file or store from its final path (a name a
    later run finds again); by default each gets a new temporary name. ``chunk`` is the
    largest Y/X chunk side of zarr outputs."""

    def part(path: Path) -> Path | None:
        return None if part_of is None else part_of(path)

    if zarr_image is None:
        writers = {
            "labels_out": TiffSliceWriter(
                target.labels, layout, dtype, class_names=class_names, part=part(target.labels)
            )
        }
        if target.probabilities is not None:
            writers["probabilities_out"] = TiffSliceWriter(
                target.probabilities, layout, np.float32, n_classes, part=part(target.probabilities)
            )
        return writers
    like = {"scale": zarr_image.scale, "zarr_format": zarr_image.zarr_format, "chunk": chunk}
    labels = target.labels.name if target.labels_of else target.labels
    writers = {
        "labels_out": ZarrSliceWriter(
            labels,
            layout,
            dtype,
            class_names=class_names,
            labels_of=target.labels_of,
            part=part(target.labels),
            **like,
        )
    }
    if target.probabilities is not None:
        writers["probabilities_out"] = ZarrSliceWriter(
            target.probabilities, layout, np.float32, n_classes, part=part(target.probabilities), **like
        )
    return writers
