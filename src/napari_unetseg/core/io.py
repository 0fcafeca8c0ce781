"""Reading and writing image stacks, and their axes.

Internally every image is a stack of 2D slices ``(N, C, Y, X)`` and every label image
``(N, Y, X)``: all axes other than channel, Y and X (time, z, ...) are flattened into
``N`` and restored on output. Axes come from file metadata when present (OME-TIFF,
ImageJ hyperstacks), can be given explicitly (``"ZYX"``, ``"TCYX"``, ``"YXC"``, ...),
and are guessed from the shape otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unetseg.core.errors import UserInputError

AXES_LETTERS = "TZCYX"
_TIFF_ALIASES = {"S": "C", "Q": "Z", "I": "Z", "R": "Z", "E": "Z", "H": "Z", "P": "Z", "A": "Z"}


@dataclass(frozen=True)
class StackLayout:
    """How a file's array maps onto the internal ``(N, C, Y, X)`` stack."""

    axes: str
    shape: tuple[int, ...]

    @property
    def stack_axes(self) -> str:
        return "".join(a for a in self.axes if a not in "CYX")

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(s for a, s in zip(self.axes, self.shape) if a not in "CYX")

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    def label_axes(self) -> str:
        """Axes of a label image for this stack (no channel axis)."""
        return self.axes.replace("C", "")


def validate_axes(axes: str, ndim: int) -> str:
    """Check an axes string against an array's dimensionality and return it upper-cased."""
    axes = axes.upper()
    bad = sorted(set(axes) - set(AXES_LETTERS))
    if bad:
        raise UserInputError(f"axes {axes!r} has unknown letter(s) {''.join(bad)}: use only {AXES_LETTERS}")
    if len(set(axes)) != len(axes):
        raise UserInputError(f"axes {axes!r} repeats a letter")
    if len(axes) != ndim:
        raise UserInputError(f"axes {axes!r} has {len(axes)} letters but the image has {ndim} dimensions")
    if "Y" not in axes or "X" not in axes:
        raise UserInputError(f"axes {axes!r} must contain Y and X")
    return axes


def guess_axes(shape: tuple[int, ...], channels_allowed: bool = True) -> str:
    """Guess axes from a shape: small trailing or leading dimensions are channels."""
    ndim = len(shape)
    if ndim == 2:
        return "YX"
    if ndim == 3:
        if channels_allowed and shape[-1] <= 4 and min(shape[:2]) > 4:
            return "YXC"
        return "ZYX"
    if ndim == 4:
        if channels_allowed and shape[-1] <= 4:
            return "ZYXC"
        if channels_allowed and shape[1] <= 4:
            return "ZCYX"
        return "TZYX"
    if ndim == 5:
        return "TZCYX" if channels_allowed else "TZYX"  # pragma: no cover - unusual
    raise UserInputError(
        f"cannot handle a {ndim}-D image of shape {shape}", ("give 2 to 5 dimensions and their axes", "axes")
    )


def _normalise_tiff_axes(axes: str, shape: tuple[int, ...]) -> str | None:
    """Map tifffile's axes codes onto TZCYX; ``None`` when they carry no information."""
    mapped = "".join(_TIFF_ALIASES.get(a, a) for a in axes.upper())
    if set(axes.upper()) <= {"Q", "I", "Y", "X"}:
        return None  # tifffile's "unknown"/"sequence": no real metadata
    if len(set(mapped)) != len(mapped) or set(mapped) - set(AXES_LETTERS):
        return None
    return mapped


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.CRITICAL):
    """Silence a library's log lines below ``level`` for a while (tifffile's about damaged
    tags, ome-zarr-py's format guesses): the error message says it all."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _quiet_tifffile():
    return quiet_logger("tifffile")


def check_output_folder(folder: str | os.PathLike, option: str = "out") -> Path:
    """Check that ``folder`` exists as a folder or can be created; nothing is created.
    ``option`` is the option that named it (for the error messages)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"{folder} is a file, expected a folder", ("choose a folder", option))
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserInputError(
            f"cannot create {folder} ({ancestor} is a file)", ("choose another folder", option)
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserInputError(
            f"cannot write to {ancestor} (permission denied)", ("choose another folder", option)
        )
    return folder


def read_image(
    path: str | os.PathLike, axes: str | None = None, lazy: bool = False
) -> tuple[np.ndarray, str]:
    """Read a TIFF/OME-TIFF, an OME-Zarr or zarr store (or any image scikit-image reads)
    and its axes.

    Parameters
    ----------
    path
        The file.
    axes
        Overrides the axes from metadata, e.g. ``"ZYX"`` or ``"YXC"``.
    lazy
        Memory-map an uncompressed TIFF instead of reading it (slices are read from
        disk when used); compressed files are read into memory all the same. A zarr
        store is always read lazily (a dask array of its full-resolution level).

    Returns
    -------
    array, axes
    """
    from napari_unetseg.core.zarr_io import is_zarr, open_zarr

    path = Path(path)
    if is_zarr(path):  # OME-Zarr or a zarr array: level 0, lazily
        image = open_zarr(path, axes)
        return image.data, image.axes
    if path.is_dir():
        raise UserInputError(f"{path} is a directory, expected an image file or a zarr store")
    if not path.exists():
        raise UserInputError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path} is empty (0 bytes)")
    meta_axes = None
    try:
        if path.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8"):
            import tifffile

            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                data = _memory_map(path, series) if lazy else None
                if data is None:
                    data = series.asarray()
                meta_axes = _normalise_tiff_axes(series.axes, data.shape)
        else:
            import skimage.io

            data = skimage.io.imread(path)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise UserInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, np.memmap):
        data = np.asarray(data)
    if axes is not None:
        return data, validate_axes(axes, data.ndim)
    if meta_axes is not None and len(meta_axes) == data.ndim:
        return data, meta_axes
    return data, guess_axes(data.shape)


def _memory_map(path: Path, series) -> np.ndarray | None:  # series 0 of the file
    """The series as a read-only memory map, or None when it is compressed or scattered."""
    import tifffile

    if series.dataoffset is None:
        return None
    try:
        return tifffile.memmap(path, series=0, mode="r")
    except (ValueError, OSError):
        return None


def read_labels(path: str | os.PathLike, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Read a label image; never guesses a channel axis."""
    data, found = read_image(path, axes)
    if axes is None and "C" in found:
        found = guess_axes(data.shape, channels_allowed=False)
    return data, found


def _names_metadata(names: dict[int, str]) -> dict:
    return {"class_names": {str(value): name for value, name in names.items()}} if names else {}


def read_class_names(path: str | os.PathLike) -> dict[int, str]:
    """Label value -> class name from a label TIFF that ``unetseg predict`` (or the Predict
    dock's save) wrote; empty for other files."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            metadata = tif.shaped_metadata or ()
    except (OSError, ValueError, tifffile.TiffFileError):
        return {}
    names = metadata[0].get("class_names", {}) if metadata else {}
    try:
        return {int(value): str(name) for value, name in dict(names).items()}
    except (TypeError, ValueError):
        return {}


def to_stack(image: np.ndarray, axes: str) -> tuple[np.ndarray, StackLayout]:
    """Reorder ``image`` to ``(N, C, Y, X)``; a view when no copy is needed."""
    axes = validate_axes(axes, image.ndim)
    layout = StackLayout(axes, tuple(image.shape))
    if "C" not in axes:
        image = image[..., None]
        axes = axes + "C"
    order = [axes.index(a) for a in axes if a not in "CYX"] + [axes.index(a) for a in "CYX"]
    stack = np.transpose(image, order)
    return stack.reshape((-1, *stack.shape[-3:])), layout


def labels_to_stack(labels: np.ndarray, axes: str) -> np.ndarray:
    """Reorder a label image to ``(N, Y, X)``."""
    if "C" in axes.upper():
        raise UserInputError(f"label images have no channel axis, got axes {axes!r}")
    stack, _ = to_stack(labels, axes)
    return stack[:, 0]


def from_label_stack(labels: np.ndarray, layout: StackLayout) -> tuple[np.ndarray, str]:
    """Inverse of :func:`labels_to_stack` for an image of ``layout``: back to file axes."""
    axes = layout.label_axes()
    sizes = dict(zip(layout.axes, layout.shape))
    stacked = [a for a in axes if a not in "YX"]
    shaped = labels.reshape([sizes[a] for a in stacked] + list(labels.shape[-2:]))
    current = "".join(stacked) + "YX"
    return np.transpose(shaped, [current.index(a) for a in axes]), axes


def check_pairs_match(image_stack: np.ndarray, label_stack: np.ndarray, name: str = "") -> None:
    """Raise a clear error when labels do not cover the image slice for slice."""
    if image_stack.shape[0] != label_stack.shape[0] or image_stack.shape[2:] != label_stack.shape[1:]:
        raise UserInputError(
            f"labels {name}shape {tuple(label_stack.shape)} (slices, Y, X) does not match the "
            f"image's {(image_stack.shape[0], *image_stack.shape[2:])}",
            ("check the files and their axes", "axes"),
        )


def write_tiff_atomic(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a TIFF so that ``path`` is either the old file or the complete new one.

    The data go to a temporary file in the same folder, which is flushed to disk and
    then renamed over ``path``. An existing file is refused unless ``overwrite``.
    """
    import tifffile

    path = Path(path)
    if path.exists() and not overwrite:
        raise UserInputError(
            f"{path} already exists", ("choose another output", "out"), ("replace it", "overwrite")
        )
    metadata = {"axes": axes} if axes else None
    return atomic_write(
        path, lambda tmp: tifffile.imwrite(tmp, data, metadata=metadata, photometric="minisblack")
    )


class TiffSliceWriter:
    """A label (or probability) TIFF written slice by slice, atomically.

    On the first ``writer[i] = slab`` the file is created (and its folder, if
    missing) as a memory map next to ``path`` with the final shape and axes; each
    assignment stores stack slice ``i`` (``(Y, X)`` labels, or ``(K, Y, X)``
    probabilities) straight to disk and drops its pages from memory, so memory holds
    one slice at a time however large the file.
    :meth:`commit` flushes it and renames it over ``path``; :meth:`discard` removes it.

    Parameters
    ----------
    path
        The final file.
    layout
        The input image's layout (which axes the stack index runs over).
    dtype
        Data type of the file.
    classes
        ``None`` for labels (file axes: the image's without ``C``); the number of
        classes for probabilities (file axes: stacked axes, then ``CYX``).
    class_names
        Label value -> class name, kept in the file's metadata (:func:`read_class_names`).
    part
        Where the unfinished file lives (e.g. a name a later run finds again, to finish
        it); by default a new temporary name beside ``path``.
    """

    def __init__(
        self,
        path: Path,
        layout: StackLayout,
        dtype,
        classes: int | None = None,
        class_names: dict[int, str] | None = None,
        part: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items() if v}
        self.dtype = np.dtype(dtype)
        self.stack_shape = layout.stack_shape
        sizes = dict(zip(layout.axes, layout.shape))
        if classes is None:
            self.axes = layout.label_axes()
            self._order = layout.stack_axes + "YX"
        else:
            self.axes = layout.stack_axes + "CYX"
            sizes["C"] = classes
            self._order = self.axes
        self.shape = tuple(sizes[a] for a in self.axes)
        self._tmp: Path | None = part
        self._file = self._stacked = None

    def __getstate__(self) -> dict:
        """Pickled without the open memory map (another process :meth:`attach`-es the part)."""
        return {**self.__dict__, "_file": None, "_stacked": None}

    def create(self) -> None:
        """Make the file beside ``path`` (at ``part`` when given, else a new temporary name)
        with its final shape and axes, every pixel 0."""
        import tifffile

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._tmp is None:
            self._tmp = _temporary_beside(self.path)
        self._file = tifffile.memmap(
            self._tmp,
            shape=self.shape,
            dtype=self.dtype,
            metadata={"axes": self.axes, **_names_metadata(self.class_names)},
            photometric="minisblack",
        )
        self._view()

    def attach(self) -> None:
        """Open the file that :meth:`create` made (in this or another process) to write into it."""
        import tifffile

        if self._file is None:
            self._file = tifffile.memmap(self._tmp, mode="r+")
            self._view()

    def _view(self) -> None:
        # the same memory in stack order: stacked axes (as in the stack), then (C,) Y, X
        self._stacked = np.transpose(self._file, [self.axes.index(a) for a in self._order])

    def __setitem__(self, index: int, slab: np.ndarray) -> None:
        self.write(index, slab)

    def write(self, index: int, slab: np.ndarray, region: tuple[slice, slice] | None = None) -> None:
        """Store stack slice ``index`` (or its ``(Y, X)`` ``region``) and drop it from memory."""
        if self._file is None:
            try:
                self.create()
            except BaseException:
                self.discard()
                raise
        target = self._stacked[np.unravel_index(index, self.stack_shape)]
        if region is None:
            target[...] = slab
        else:
            target[(Ellipsis, *region)] = slab
        self._release()

    def _release(self) -> None:
        """Write the dirty pages out and drop them from this process's memory (they stay
        in the file and the page cache), so RSS does not grow with the output's size."""
        self._file.flush()
        mapped = getattr(self._file, "_mmap", None)  # numpy's mmap.mmap behind the memmap
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)

    def part_exists(self) -> bool:
        """Whether the unfinished output is on disk (made by :meth:`create`, not yet committed)."""
        return self._tmp is not None and self._tmp.exists()

    def commit(self, overwrite: bool = False) -> Path:
        """Flush to disk and rename over ``path`` (refused if it exists, unless ``overwrite``)."""
        if self._file is None:
            raise RuntimeError("nothing was written")
        if self.path.exists() and not overwrite:
            self.discard()
            raise UserInputError(
                f"{self.path} already exists", ("choose another output", "out"), ("replace it", "overwrite")
            )
        self._file.flush()
        self._file = self._stacked = None  # unmaps the file
        _replace_durably(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (after an error or a cancel)."""
        self._file = self._stacked = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then rename it.

    The temporary file is flushed to disk (fsync) before the rename, so after a crash
    or a kill ``path`` holds either its old content or the complete new one; a failed
    or interrupted write leaves no temporary file behind.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UserInputError(f"output folder {path.parent} does not exist")
    tmp = _temporary_beside(path)
    try:
        write(tmp)
        _replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _temporary_beside(path: Path) -> Path:
    """A new empty ``.<name>.XXXX.part`` file in ``path``'s folder (same file system)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except PermissionError as exc:
        raise UserInputError(f"cannot write to {path.parent} (permission denied)") from exc
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes it private; outputs are the user's usual files
    return Path(name)


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_durably(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk (fsync), then rename it over ``path`` in one step."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
