"""The npe2 manifest, reader, writer and sample data in a real napari viewer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.gui


def test_manifest_validates_and_is_found():
    from npe2 import PluginManager

    npe2 = Path(sys.executable).parent / "npe2"
    proc = subprocess.run([str(npe2), "validate", "napari-unetseg"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unetseg")
    assert {c.id for c in manifest.contributions.commands} >= {
        "napari-unetseg.get_reader",
        "napari-unetseg.write_labels",
        "napari-unetseg.make_sample_data",
    }


def test_reader_opens_stack_with_channels(make_napari_viewer, tmp_path):
    data = np.random.default_rng(0).integers(0, 1000, (3, 2, 32, 40), dtype=np.uint16)
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZCYX"})
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-unetseg")
    assert len(layers) == 2  # one layer per channel
    assert layers[0].data.shape == (3, 32, 40)


def test_sample_data_and_writer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-unetseg", "nuclei")
    names = [layer.name for layer in layers]
    assert names == ["nuclei", "strokes", "ground truth"]
    strokes = viewer.layers["strokes"]
    assert set(np.unique(strokes.data)) == {0, 1, 2}
    out = tmp_path / "strokes.tif"
    written = strokes.save(str(out), plugin="napari-unetseg")
    assert written and np.array_equal(tifffile.imread(out), strokes.data)
