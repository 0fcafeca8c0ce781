"""OME-Zarr and plain zarr: images in, label and probability images out (issue 22).

Reading uses ome-zarr-py: the first multiscale image of a store (NGFF 0.4 on zarr v2,
0.5 on zarr v3), its level 0 as a lazy dask array, its axes and pixel sizes from the
metadata; a plain zarr array has no axes, so they must be given. Writing makes an
OME-Zarr image of the prediction (one resolution level, the input's axes and pixel
sizes), either as a new store or as a labels image inside the input's ``labels/``
group, where napari-ome-zarr shows it over the image. :class:`ZarrSliceWriter` fills it
one stack slice at a time, as :class:`~napari_unetseg.core.io.TiffSliceWriter` fills a
TIFF, in a temporary ``.<name>.<random>.part`` store renamed into place when complete:
a store under the final name is always a finished one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import StackLayout, quiet_logger, validate_axes

_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
_KINDS = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
OME_ORDER = "TCZYX"  # NGFF: time, then channel, then space
CHUNK = 1024  # largest chunk side in Y and X of written arrays


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store on disk (a folder with zarr metadata)."""
    path = Path(path)
    markers = ("zarr.json", ".zgroup", ".zarray")
    return path.is_dir() and any((path / name).is_file() for name in markers)


@dataclass(frozen=True)
class ZarrImage:
    """An image in a zarr store: its resolution levels (lazy dask arrays, full
    resolution first), axes (letters of ``TZCYX``), level 0's pixel size per axis, and
    the store's zarr format (2 or 3); for an OME-Zarr labels image (``kind="labels"``)
    also its name and class names."""

    levels: list
    axes: str
    scale: tuple[float, ...]
    zarr_format: int
    name: str = ""
    kind: str = "image"
    class_names: dict = field(default_factory=dict)

    @property
    def data(self):
        """The full-resolution level."""
        return self.levels[0]


def quiet():
    """ome-zarr-py logs its format guesses ("version mismatch ...") at warning level."""
    return quiet_logger("ome_zarr", logging.ERROR)


def open_zarr(path: str | os.PathLike, axes: str | None = None) -> ZarrImage:
    """The image of a zarr store: an OME-Zarr multiscale image, or a plain zarr array
    (then ``axes`` is needed). ``axes`` overrides the metadata's."""
    return zarr_images(path, axes)[0]


def zarr_images(path: str | os.PathLike, axes: str | None = None) -> list[ZarrImage]:
    """Every image of a zarr store, as ome-zarr-py finds them: an OME-Zarr image first,
    then its labels images (``kind="labels"``); or the one plain zarr array (then ``axes``
    is needed). ``axes`` overrides the first image's axes."""
    import dask.array as da
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    path = Path(path)
    if not is_zarr(path):
        raise UserInputError(f"{path} is not a zarr store (no zarr.json, .zgroup or .zarray in it)")
    try:
        with quiet():
            location = parse_url(str(path), mode="r")
            nodes = list(Reader(location)()) if location is not None else []
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad store
        raise UserInputError(f"cannot read {path}: {exc}") from exc
    images = []
    for node in nodes:
        if not any(isinstance(spec, Multiscales) for spec in node.specs):
            continue
        labels = any(isinstance(spec, Label) for spec in node.specs)
        names = [a["name"] if isinstance(a, dict) else a for a in node.metadata.get("axes", [])]
        levels = list(node.data)
        found = _letters(names, path) if names else None
        if axes is not None and not images:
            found = validate_axes(axes, levels[0].ndim)
        if found is None:
            raise UserInputError(f"{path} has no axes metadata", ("give its axes, e.g. ZYX", "axes"))
        properties = node.metadata.get("properties") or {}
        classes = {int(v): str(p.get("class", "")) for v, p in properties.items()}
        images.append(
            ZarrImage(
                levels,
                validate_axes(found, levels[0].ndim),
                _scale(node.metadata, levels[0].ndim),
                location.fmt.zarr_format,
                str(node.metadata.get("name") or "") if labels else path.name.split(".")[0],
                "labels" if labels else "image",
                {v: n for v, n in classes.items() if n},
            )
        )
    if images:
        return images
    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - a group that is no image, or a damaged store
        raise UserInputError(f"{path} holds no image (no OME-Zarr multiscales, no zarr array)") from exc
    if axes is None:
        raise UserInputError(f"{path} has no axes metadata", ("give its axes, e.g. ZYX", "axes"))
    found = validate_axes(axes, array.ndim)
    return [ZarrImage([da.from_zarr(array)], found, (1.0,) * array.ndim, array.metadata.zarr_format,
                      path.name.split(".")[0])]  # fmt: skip


def _letters(names: list[str], path: Path) -> str:
    unknown = [name for name in names if name.lower() not in _LETTERS]
    if unknown:
        raise UserInputError(
            f"{path} has axes {names}: {unknown[0]!r} is none of t, c, z, y, x",
            ("give its axes with letters of TZCYX", "axes"),
        )
    return "".join(_LETTERS[name.lower()] for name in names)


def _scale(metadata: dict, ndim: int) -> tuple[float, ...]:
    """Level 0's scale transform (pixel size per axis); ones when there is none."""
    transforms = metadata.get("coordinateTransformations") or [[]]
    for transform in transforms[0]:
        if transform.get("type") == "scale" and len(transform.get("scale", ())) == ndim:
            return tuple(float(s) for s in transform["scale"])
    return (1.0,) * ndim


class ZarrSliceWriter:
    """A label (or probability) image written as OME-Zarr slice by slice, atomically.

    The same contract as :class:`~napari_unetseg.core.io.TiffSliceWriter`: ``writer[i] =
    slab`` stores stack slice ``i`` (``(Y, X)`` labels, ``(K, Y, X)`` probabilities),
    :meth:`commit` puts the finished store under its name, :meth:`discard` removes it.

    Parameters
    ----------
    path
        The store to write, e.g. ``OUT/cells.ome.zarr``; or, with ``labels_of``, the
        labels image's name inside that image's ``labels/`` group.
    layout
        The input image's layout (which axes the stack index runs over).
    dtype
        Data type of the array.
    classes
        ``None`` for labels; the number of classes for probabilities (a channel axis).
    class_names
        Label value -> class name, kept as the labels image's ``properties``.
    scale
        The input's pixel size per axis of ``layout.axes`` (carried over; channels get 1).
    zarr_format
        2 (NGFF 0.4) or 3 (NGFF 0.5).
    labels_of
        An OME-Zarr image store: write a labels image into its ``labels/`` group.
    part
        Where the unfinished store lives (e.g. a name a later run finds again, to finish
        it); by default a new temporary name beside the final one.
    chunk
        Largest chunk side in Y and X (blocks written by several processes at once must
        cover whole chunks).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        layout: StackLayout,
        dtype,
        classes: int | None = None,
        class_names: dict[int, str] | None = None,
        scale: tuple[float, ...] | None = None,
        zarr_format: int = 3,
        labels_of: str | os.PathLike | None = None,
        part: Path | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self.labels_of = None if labels_of is None else Path(labels_of)
        self.path = self.labels_of / "labels" / str(path) if self.labels_of else Path(path)
        self.dtype, self.classes, self.zarr_format = np.dtype(dtype), classes, zarr_format
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items() if v}
        self.stack_axes, self.stack_shape = layout.stack_axes, layout.stack_shape
        sizes = dict(zip(layout.axes, layout.shape))
        pixel = dict(zip(layout.axes, scale or (1.0,) * len(layout.axes)))
        if classes is None:
            sizes.pop("C", None)
        else:
            sizes["C"], pixel["C"] = classes, 1.0
        self.axes = "".join(a for a in OME_ORDER if a in sizes)
        self.shape = tuple(sizes[a] for a in self.axes)
        self.scale = [float(pixel[a]) for a in self.axes]
        self._tmp: Path | None = part
        self.chunk = chunk
        self._array = None

    def __getstate__(self) -> dict:
        """Pickled without the open array (another process :meth:`attach`-es the part)."""
        return {**self.__dict__, "_array": None}

    def _format(self):
        from ome_zarr.format import FormatV04, FormatV05

        return FormatV05() if self.zarr_format == 3 else FormatV04()

    def create(self) -> None:
        """Make the store (at ``part`` when given, else under a new temporary name beside
        the final one) with the array's shape, chunks and metadata, every pixel 0."""
        import zarr
        from ome_zarr.writer import write_multiscales_metadata

        home = self.labels_of or self.path.parent
        home.mkdir(parents=True, exist_ok=True)
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".part", dir=home))
        group = zarr.open_group(str(self._tmp), mode="w", zarr_format=self.zarr_format)
        chunks = tuple(
            min(s, self.chunk) if a in "YX" else (s if a == "C" else 1) for a, s in zip(self.axes, self.shape)
        )
        self._array = group.create_array("0", shape=self.shape, chunks=chunks, dtype=self.dtype, fill_value=0)
        datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": self.scale}]}]
        axes = [{"name": a.lower(), "type": _KINDS[a]} for a in self.axes]
        write_multiscales_metadata(group, datasets, fmt=self._format(), axes=axes, name=self.path.name)

    def attach(self) -> None:
        """Open the store that :meth:`create` made (in this or another process) to write into it."""
        import zarr

        if self._array is None:
            self._array = zarr.open_array(str(self._tmp / "0"), mode="r+")

    def __setitem__(self, index: int, slab: np.ndarray) -> None:
        self.write(index, slab)

    def write(self, index: int, slab: np.ndarray, region: tuple[slice, slice] | None = None) -> None:
        """Store stack slice ``index`` (or its ``(Y, X)`` ``region``)."""
        if self._array is None:
            try:
                self.create()
            except BaseException:
                self.discard()
                raise
        position = dict(zip(self.stack_axes, np.unravel_index(index, self.stack_shape)))
        where = {a: int(position[a]) for a in position}
        if region is not None:
            where.update(Y=region[0], X=region[1])
        self._array[tuple(where.get(a, slice(None)) for a in self.axes)] = slab

    def part_exists(self) -> bool:
        """Whether the unfinished output is on disk (made by :meth:`create`, not yet committed)."""
        return self._tmp is not None and self._tmp.exists()

    def commit(self, overwrite: bool = False) -> Path:
        """Rename the finished store into place (refused if one exists, unless ``overwrite``)
        and, for a labels image, list it in the image's ``labels/`` group."""
        if self._array is None:
            raise RuntimeError("nothing was written")
        if self.path.exists() and not overwrite:
            self.discard()
            raise UserInputError(
                f"{self.path} already exists", ("choose another output", "out"), ("replace it", "overwrite")
            )
        self._array = None
        self._label_metadata(self._tmp)
        if self.labels_of is not None:
            self._labels_group()  # before the image appears in it
        if self.path.exists():
            old = self._tmp.with_name(self._tmp.name + ".old")
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old)
        else:
            os.replace(self._tmp, self.path)
        if self.labels_of is not None:
            self._list_in_labels_group()
        return self.path

    def _label_metadata(self, store: Path) -> None:
        """Mark a labels image as one (``image-label``, with the class names)."""
        import zarr
        from ome_zarr.writer import add_metadata

        if self.classes is not None:
            return
        group = zarr.open_group(str(store), mode="r+")
        label = {"version": self._format().version}
        if self.class_names:
            label["properties"] = [
                {"label-value": v, "class": n} for v, n in sorted(self.class_names.items())
            ]
        add_metadata(group, {"image-label": label}, fmt=self._format())

    def _labels_group(self):
        import zarr

        image = zarr.open_group(str(self.labels_of), mode="r+")
        return image.require_group("labels")

    def _list_in_labels_group(self) -> None:
        from ome_zarr.writer import add_metadata, get_metadata

        group = self._labels_group()
        names = list(get_metadata(group).get("labels", []))
        if self.path.name not in names:
            add_metadata(group, {"labels": [*names, self.path.name]}, fmt=self._format())

    def discard(self) -> None:
        """Remove the temporary store (after an error or a cancel)."""
        self._array = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
