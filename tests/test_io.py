"""Reading stacks with axes from metadata or explicit, writing atomically."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import (
    TiffSliceWriter,
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


def test_outputs_get_the_permissions_of_any_new_file(tmp_path):
    """A user found the label files and model files readable by no one else: the atomic
    write's temporary file is private (mkstemp), and the rename kept that."""
    import os

    from napari_unetseg.core.io import write_bytes_atomic

    mask = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "scores.csv", b"a,b\n")
        write_tiff_atomic(tmp_path / "labels.tif", np.ones((4, 4), np.uint8), "YX")
    finally:
        os.umask(mask)
    for name in ("scores.csv", "labels.tif"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert path.read_bytes() == b"a,b\n"


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


def test_default_normalisation_keeps_dim_nuclei_visible_beside_a_few_bright_ones():
    """DSB2018's 520x696 images: dim nuclei (here 10 % of the pixels at 300) beside a few
    very bright ones (0.5 % at 4000) on a background of 100. With the 99.8th percentile the
    bright nuclei set the scale and the dim ones sit near the background (0.05); the
    default (99th) keeps them well apart (issue 26)."""
    image = np.full((1, 1, 100, 100), 100.0)
    image[0, 0, :10] = 300.0  # dim nuclei: 10 % of the pixels
    image[0, 0, 10, :50] = 4000.0  # bright nuclei: 0.5 %
    dim = Normalization().normalize(image)[0, 0, 5, 5]
    assert dim > 0.9
    assert Normalization(high=99.8).normalize(image)[0, 0, 5, 5] < 0.1  # the old default


def test_a_nearly_empty_field_keeps_its_noise_below_its_objects():
    """A field with two small nuclei (0.3 % of the pixels at 190) on a noisy background
    (13 +- 2.4, as DSB2018's image 289): its 99th percentile is background noise, and
    scaling that to 1 made noise as bright as nuclei (a network found 408 false objects in it).
    The floor keeps the noise near 0 and the nuclei far above it; an image of dim nuclei
    beside a few bright ones on the same noise is scaled as before."""
    rng = np.random.default_rng(0)
    noise = rng.normal(13.0, 2.4, (1, 1, 256, 256))
    field = noise.copy()
    field[0, 0, 100:110, 100:110] = field[0, 0, 150:160, 40:50] = 190.0
    scaled = Normalization().normalize(field)[0, 0]
    assert np.percentile(scaled[:90], 99.9) < 0.5 and scaled[105, 105] > 2
    assert np.percentile(Normalization(min_range=0.0).normalize(field)[0, 0][:90], 99.9) > 1  # before
    dim = noise.copy()
    dim[0, 0, :30] += 200.0  # dim nuclei: 12 % of the pixels
    dim[0, 0, 200, :50] = 4000.0  # a few very bright ones
    assert np.array_equal(Normalization().normalize(dim), Normalization(min_range=0.0).normalize(dim))


def test_normalisation_floor_is_part_of_the_recipe():
    with pytest.raises(UserInputError, match="min_range"):
        Normalization(min_range=1.0)
    assert Normalization.from_dict({"high": 99.8}).min_range == Normalization().min_range
    assert Normalization.from_dict(Normalization(min_range=0.0).to_dict()) == Normalization(min_range=0.0)
    with pytest.raises(UserInputError, match="min_range must be a number, got 'abc'"):
        Normalization.from_dict({"min_range": "abc"})  # was an internal error from a config file


@pytest.mark.parametrize(
    "axes,shape", [("ZYX", (3, 20, 30)), ("YXZ", (20, 30, 3)), ("TCZYX", (2, 2, 3, 20, 30)), ("YX", (20, 30))]
)
def test_slice_writer_puts_each_slice_where_the_file_axes_say(tmp_path, axes, shape):
    image = np.zeros(shape, np.uint8)
    stack, layout = to_stack(image, axes)
    labels = np.random.default_rng(0).integers(0, 200, (stack.shape[0], 20, 30), dtype=np.uint8)
    probs = np.random.default_rng(1).random((stack.shape[0], 3, 20, 30), dtype=np.float32)
    writer = TiffSliceWriter(tmp_path / "out" / "labels.tif", layout, np.uint8)
    prob_writer = TiffSliceWriter(tmp_path / "out" / "probs.tif", layout, np.float32, classes=3)
    assert not (tmp_path / "out").exists()  # nothing before the first slice
    for i in range(stack.shape[0]):
        writer[i] = labels[i]
        prob_writer[i] = probs[i]
    writer.commit()
    prob_writer.commit()
    expected, expected_axes = from_label_stack(labels, layout)
    with tifffile.TiffFile(tmp_path / "out" / "labels.tif") as tif:
        assert tif.series[0].axes.replace("Q", "") in (
            expected_axes,
            expected_axes.replace("T", "").replace("C", ""),
        )
        assert np.array_equal(tif.asarray().reshape(expected.shape), expected)
    back = tifffile.imread(tmp_path / "out" / "probs.tif")
    assert np.array_equal(back.reshape(probs.shape), probs)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.tif", "probs.tif"]  # no temp file


def test_slice_writer_refuses_to_replace_and_cleans_up(tmp_path):
    _, layout = to_stack(np.zeros((2, 8, 8), np.uint8), "ZYX")
    (tmp_path / "x.tif").write_bytes(b"keep me")
    writer = TiffSliceWriter(tmp_path / "x.tif", layout, np.uint8)
    writer[0] = np.ones((8, 8), np.uint8)
    with pytest.raises(UserInputError, match="already exists"):
        writer.commit()
    assert (tmp_path / "x.tif").read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]
    unused = TiffSliceWriter(tmp_path / "y.tif", layout, np.uint8)
    unused.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_lazy_read_maps_plain_tiffs_and_reads_compressed_ones(tmp_path, compression):
    data = np.random.default_rng(2).integers(0, 4000, (5, 32, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, compression=compression, metadata={"axes": "ZYX"})
    array, axes = read_image(tmp_path / "s.tif", lazy=True)
    assert axes == "ZYX" and np.array_equal(array, data)
    assert isinstance(array, np.memmap) == (compression is None)
