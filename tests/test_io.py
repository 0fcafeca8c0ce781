"""Reading stacks with axes from metadata or explicit, writing atomically."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import (
    from_label_stack,
    labels_to_stack,
    read_image,
    read_labels,
    to_stack,
    write_tiff_atomic,
)
from napari_unetseg.core.normalization import Normalization


def test_ome_axes_from_metadata(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (3, 2, 20, 30), dtype=np.uint16)
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZCYX"})
    array, axes = read_image(path)
    assert axes == "ZCYX"
    stack, layout = to_stack(array, axes)
    assert stack.shape == (3, 2, 20, 30) and layout.channels == 2


def test_imagej_hyperstack_axes(tmp_path):
    data = np.zeros((4, 5, 16, 18), np.uint8)  # T, Z, Y, X
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    array, axes = read_image(path)
    assert axes == "TZYX"
    stack, layout = to_stack(array, axes)
    assert stack.shape == (20, 1, 16, 18) and layout.stack_shape == (4, 5)
    labels = np.arange(20 * 16 * 18).reshape(20, 16, 18)
    back, back_axes = from_label_stack(labels, layout)
    assert back.shape == (4, 5, 16, 18) and back_axes == "TZYX"
    assert np.array_equal(labels_to_stack(back, back_axes), labels)


@pytest.mark.parametrize(
    "shape,axes,expected",
    [
        ((20, 30), None, (1, 1, 20, 30)),
        ((20, 30, 3), None, (1, 3, 20, 30)),
        ((5, 20, 30), None, (5, 1, 20, 30)),
        ((2, 3, 20, 30), "TCYX", (2, 3, 20, 30)),
        ((20, 30, 2), "YXC", (1, 2, 20, 30)),
        ((20, 30, 7), "ZYX", (20, 1, 30, 7)),
    ],
)
def test_plain_tiff_axes_guessed_or_given(tmp_path, shape, axes, expected):
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.zeros(shape, np.float32))
    array, found = read_image(path, axes)
    assert to_stack(array, found)[0].shape == expected


def test_channel_last_rgb_layout_values(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    stack, _ = to_stack(data, "YXC")
    assert np.array_equal(stack[0, 1], data[..., 1])


def test_bad_axes_and_files(tmp_path):
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8))
    with pytest.raises(UserInputError, match="2 dimensions"):
        read_image(path, "ZYX")
    with pytest.raises(UserInputError, match="unknown letter"):
        read_image(path, "YQ")
    with pytest.raises(UserInputError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(UserInputError, match="directory"):
        read_image(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(UserInputError, match="cannot read"):
        read_image(tmp_path / "junk.tif")
    labels, axes = read_labels(tmp_path / "p.tif")
    assert axes == "YX"


def test_atomic_write_refuses_existing_and_leaves_no_partial(tmp_path):
    path = tmp_path / "out.tif"
    write_tiff_atomic(path, np.ones((4, 4), np.uint8), "YX")
    with pytest.raises(UserInputError, match="already exists"):
        write_tiff_atomic(path, np.zeros((4, 4), np.uint8))
    assert tifffile.imread(path).sum() == 16
    write_tiff_atomic(path, np.zeros((4, 4), np.uint8), overwrite=True)
    assert tifffile.imread(path).sum() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_normalisation_any_dtype(dtype):
    rng = np.random.default_rng(0)
    stack = (rng.random((2, 1, 30, 30)) * 200).astype(dtype)
    out = Normalization(1, 99).normalize(stack)
    assert out.dtype == np.float32
    assert -0.1 < np.percentile(out, 1) < 0.1 and 0.9 < np.percentile(out, 99) < 1.1
    constant = Normalization().normalize(np.full((1, 1, 4, 4), 7, dtype))
    assert np.isfinite(constant).all()
    with pytest.raises(UserInputError, match="NaN"):
        Normalization().normalize(np.full((1, 1, 4, 4), np.nan))
