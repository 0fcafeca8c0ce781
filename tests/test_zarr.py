"""OME-Zarr and zarr in and out of ``unetseg predict`` (real stores, ome-zarr-py, napari-ome-zarr)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_unetseg.cli import main
from napari_unetseg.core.zarr_io import open_zarr


@pytest.fixture(scope="module")
def model(nuclei_model):
    """A small 2D U-Net that finds the sample's nuclei, and its (3, 96, 96) training image."""
    return nuclei_model


def write_ome_zarr(path, image, axes, version, scale):
    """An OME-Zarr image as other tools write it (ome-zarr-py, a two-level pyramid)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV05() if version == "0.5" else FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(image, group, axes=axes, fmt=fmt, scale_factors=(2,), scale=dict(zip(axes, scale)))
    return path


def predict(model_file, *args):
    return main(["predict", "--model", str(model_file), "--device", "cpu", *map(str, args)])


@pytest.mark.parametrize(("version", "axes"), [("0.4", "zyx"), ("0.5", "tzyx")])
def test_ome_zarr_in_and_out_gives_the_tiff_result(model, tmp_path, version, axes):
    model_file, image = model
    image = image if axes == "zyx" else image[None]  # one time point of three planes
    scale = [2.0, 0.5, 0.25] if axes == "zyx" else [10.0, 2.0, 0.5, 0.25]
    store = write_ome_zarr(tmp_path / "cells.ome.zarr", image, axes, version, scale)
    tifffile.imwrite(tmp_path / "cells.tif", image, metadata={"axes": axes.upper()}, photometric="minisblack")
    assert predict(model_file, "--out", tmp_path / "zarr", "--probabilities", store) == 0
    assert predict(model_file, "--out", tmp_path / "tiff", "--probabilities", tmp_path / "cells.tif") == 0

    labels = open_zarr(tmp_path / "zarr" / "cells.ome.zarr")
    assert labels.axes == axes.upper() and labels.scale == tuple(scale)
    assert labels.zarr_format == (2 if version == "0.4" else 3)
    reference = tifffile.imread(tmp_path / "tiff" / "cells.tif")
    assert np.array_equal(np.asarray(labels.data), reference) and len(np.unique(reference)) == 2
    probabilities = open_zarr(tmp_path / "zarr" / "cells_probabilities.ome.zarr")
    assert probabilities.axes == ("CZYX" if axes == "zyx" else "TCZYX")
    expected = tifffile.imread(tmp_path / "tiff" / "cells_probabilities.tif")  # stack axes, then C
    np.testing.assert_allclose(np.moveaxis(np.asarray(probabilities.data), -4, -3), expected, atol=1e-5)
    group = zarr.open_group(str(tmp_path / "zarr" / "cells.ome.zarr"), mode="r")
    attrs = group.attrs.get("ome", group.attrs)  # 0.5 keeps the metadata under "ome"
    assert {"label-value": 2, "class": "nucleus"} in attrs["image-label"]["properties"]
    assert not list((tmp_path / "zarr").glob(".*"))  # no temporary store left


def test_labels_go_into_the_input_and_napari_ome_zarr_shows_both(model, tmp_path):
    from napari_ome_zarr import napari_get_reader

    model_file, image = model
    store = write_ome_zarr(tmp_path / "cells.ome.zarr", image, "zyx", "0.5", [1.0, 0.5, 0.5])
    assert predict(model_file, "--label-name", "unetseg", store) == 0
    layers = napari_get_reader(str(store))(str(store))
    kinds = sorted(kind for _, _, kind in layers)
    assert kinds == ["image", "labels"]
    labels = next(data for data, _, kind in layers if kind == "labels")
    assert np.asarray(labels[0]).shape == image.shape and len(np.unique(np.asarray(labels[0]))) == 2
    assert open_zarr(store).data.shape == image.shape  # the image itself is untouched

    # a second run names another labels image; the same name again needs --overwrite
    assert predict(model_file, "--label-name", "second", store) == 0
    group = zarr.open_group(str(store / "labels"), mode="r")
    assert group.attrs["ome"]["labels"] == ["unetseg", "second"]
    assert predict(model_file, "--label-name", "unetseg", store) == 2
    assert predict(model_file, "--label-name", "unetseg", "--overwrite", store) == 0
    assert zarr.open_group(str(store / "labels"), mode="r").attrs["ome"]["labels"] == ["unetseg", "second"]
    assert not [p for p in store.iterdir() if p.name.startswith(".")]


def test_a_plain_zarr_array_needs_its_axes(model, tmp_path, capsys):
    model_file, image = model
    zarr.save_array(str(tmp_path / "plain.zarr"), image)
    assert predict(model_file, "--out", tmp_path / "out", tmp_path / "plain.zarr") == 2
    err = capsys.readouterr().err.strip()
    assert "no axes metadata" in err and "--axes" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert predict(model_file, "--out", tmp_path / "out", "--axes", "ZYX", tmp_path / "plain.zarr") == 0
    assert open_zarr(tmp_path / "out" / "plain.ome.zarr").data.shape == image.shape


def test_an_unfinished_store_is_never_under_the_final_name(tmp_path):
    from napari_unetseg.core.io import StackLayout
    from napari_unetseg.core.zarr_io import ZarrSliceWriter

    writer = ZarrSliceWriter(tmp_path / "out.ome.zarr", StackLayout("ZYX", (3, 32, 32)), np.uint8)
    writer[0] = np.ones((32, 32), np.uint8)
    assert not (tmp_path / "out.ome.zarr").exists() and len(list(tmp_path.iterdir())) == 1
    writer.discard()
    assert not list(tmp_path.iterdir())


@pytest.mark.gui
def test_the_reader_opens_a_pyramid_and_the_predict_dock_predicts_it_at_full_resolution(
    model, tmp_path, make_napari_viewer, qtbot
):
    model_file, image = model
    store = write_ome_zarr(tmp_path / "cells.ome.zarr", image, "zyx", "0.4", [2.0, 0.5, 0.5])
    assert predict(model_file, "--label-name", "unetseg", store) == 0  # a labels image beside it
    viewer = make_napari_viewer()
    layers = viewer.open(str(store), plugin="napari-unetseg")
    cells = next(layer for layer in layers if layer.name == "cells")
    assert cells.multiscale and len(cells.data) == 2 and cells.data[0].shape == image.shape
    assert tuple(cells.scale) == (2.0, 0.5, 0.5)
    labels = viewer.layers["unetseg"]
    assert "nucleus" in list(labels.features["class"])

    _, predict_dock = viewer.window.add_plugin_dock_widget("napari-unetseg", "Predict")
    predict_dock._source.value = "file"
    predict_dock._model_file.value = str(model_file)
    predict_dock._images.value = [cells]
    predict_dock.predict()
    qtbot.waitUntil(lambda: predict_dock.worker is None, timeout=240_000)
    result = viewer.layers["cells prediction"]
    assert result.data.shape == image.shape and tuple(result.scale) == (2.0, 0.5, 0.5)
    written = labels.data[0] if labels.multiscale else labels.data  # what the CLI wrote (one level)
    assert np.array_equal(result.data, np.asarray(written)) and len(np.unique(result.data)) == 2
