"""bioimage.io model packages: exported, tested by bioimageio.core, and opened back."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.file_prediction import predict_files
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.workflows import train_from_files

pytest.importorskip("bioimageio.spec")
BIOIMAGEIO = Path(sys.executable).parent / "bioimageio"


def _bioimageio_test(package: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIOIMAGEIO), "test", str(package)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def exported(nuclei_model, tmp_path_factory, cli_module):
    """The nuclei model exported with ``unetseg export`` (its training image as the sample)."""
    folder = tmp_path_factory.mktemp("exported")
    model, image = nuclei_model
    tifffile.imwrite(folder / "cells.tif", image, metadata={"axes": "ZYX"}, photometric="minisblack")
    proc = cli_module(
        "export", model, folder / "cells.zip", "--sample", folder / "cells.tif", "--author", "A. Person"
    )
    assert proc.returncode == 0, proc.stderr
    return folder / "cells.zip", folder / "cells.tif", model


@pytest.fixture(scope="module")
def cli_module():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "napari_unetseg", *map(str, args)],
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    return run


def test_the_package_passes_bioimageio_test(exported):
    package, _, _ = exported
    proc = _bioimageio_test(package)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = zipfile.ZipFile(package).namelist()
    assert {"weights.pt", "weights_torchscript.pt", "napari_unetseg_architecture.py", "cover.png",
            "README.md", "test_input.npy", "test_output.npy"} <= set(names)  # fmt: skip
    description = yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))
    output = description["outputs"][0]
    assert [a.get("channel_names") for a in output["axes"] if a["type"] == "channel"] == [
        ["background", "nucleus"]
    ]
    assert "scale_range" in [step["id"] for step in description["inputs"][0]["preprocessing"]]
    assert description["authors"] == [{"name": "A. Person"}]


def test_the_package_predicts_what_the_model_file_predicts(exported, tmp_path):
    package, image, model = exported
    config = PredictConfig(device="cpu")
    predict_files(package, [image], tmp_path / "package", config, probabilities=True)
    predict_files(model, [image], tmp_path / "file", config, probabilities=True)
    for name in ("cells.tif", "cells_probabilities.tif"):
        via_package, via_file = (tifffile.imread(tmp_path / kind / name) for kind in ("package", "file"))
        np.testing.assert_allclose(via_package, via_file, atol=1e-6)
    labels = tifffile.imread(tmp_path / "file" / "cells.tif")
    assert len(np.unique(labels)) == 2

    # bioimageio.core running the package alone gives our probabilities (its own preprocessing:
    # the same percentiles, scale and softmax; it sees no mirrored border, so compare inside)
    import bioimageio.core

    plane = tifffile.imread(image)[0].astype(np.float32)
    theirs = (
        bioimageio.core.predict(model=str(package), inputs=plane[None, None]).members["probabilities"].data
    )
    ours = tifffile.imread(tmp_path / "file" / "cells_probabilities.tif")[0]
    inside = (slice(None), slice(16, -16), slice(16, -16))
    assert np.abs(np.asarray(theirs)[0][inside] - ours[inside]).mean() < 0.01
    assert (np.asarray(theirs)[0].argmax(0) + 1 == labels[0]).mean() > 0.99


def test_training_starts_from_a_package(exported, tmp_path):
    package, image, _ = exported
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=7)
    tifffile.imwrite(
        tmp_path / "strokes.tif", sample.strokes, metadata={"axes": "ZYX"}, photometric="minisblack"
    )
    tifffile.imwrite(tmp_path / "image.tif", sample.image, metadata={"axes": "ZYX"}, photometric="minisblack")
    options = {"steps": 2, "patch_size": 64, "batch_size": 2, "device": "cpu"}
    result = train_from_files([tmp_path / "image.tif"], [tmp_path / "strokes.tif"], tmp_path / "run",
                              init=package, train_options=options)  # fmt: skip
    assert result.loaded.spec.depth == load_model(package).spec.depth == 2
    assert result.loaded.class_names == ("background", "nucleus")


def test_a_3d_model_exports_and_passes(tmp_path, cli_module):
    sample = make_sample(n_slices=8, size=64, painted_slices=8, seed=3)
    tifffile.imwrite(tmp_path / "stack.tif", sample.image, metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(
        tmp_path / "strokes.tif", sample.strokes, metadata={"axes": "ZYX"}, photometric="minisblack"
    )
    train_from_files([tmp_path / "stack.tif"], [tmp_path / "strokes.tif"], tmp_path / "run",
                     model_options={"name": "unet3d", "depth": 2, "base_channels": 4},
                     train_options={"steps": 2, "patch_size": 32, "patch_depth": 4, "batch_size": 2,
                                    "device": "cpu"})  # fmt: skip
    proc = cli_module(
        "export", tmp_path / "run" / "model.pt", tmp_path / "stack.zip", "--sample", tmp_path / "stack.tif"
    )
    assert proc.returncode == 0, proc.stderr
    test = _bioimageio_test(tmp_path / "stack.zip")
    assert test.returncode == 0, test.stdout[-3000:]
    assert load_model(tmp_path / "stack.zip").model.spatial_dims == 3


def test_a_package_of_another_tool_is_refused_with_what_it_lacks(tmp_path):
    package = tmp_path / "other.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr(
            "rdf.yaml", yaml.safe_dump({"type": "model", "weights": {"torchscript": {"source": "w.pt"}}})
        )
    with pytest.raises(UserInputError, match="was not exported by napari-unetseg.*weights: torchscript"):
        load_model(package)


@pytest.mark.gui
def test_the_train_dock_exports_and_the_predict_dock_takes_the_package(make_napari_viewer, qtbot, tmp_path):
    from test_widgets import open_dock, predict_dock_with_file, train_from_dock, wait_for

    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=4)
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    train_from_dock(qtbot, train, image, strokes, tmp_path / "run", steps=3)
    assert train._export.enabled
    train.export_to(tmp_path / "cells.zip")
    assert not train._start.enabled  # nothing else starts while it exports
    wait_for(qtbot, train)
    assert "Exported for bioimage.io" in train._status.value and train._start.enabled
    assert load_model(tmp_path / "cells.zip").step == 3

    predict = predict_dock_with_file(viewer, tmp_path / "cells.zip")
    predict._images.value = [image]
    predict.predict()
    wait_for(qtbot, predict)
    assert viewer.layers["cells prediction"].data.shape == sample.image.shape
