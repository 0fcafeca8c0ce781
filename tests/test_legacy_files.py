"""Files written by napari-unetseg 0.1.0 (f5c763a) keep working: run folders, model files
and ``--config`` files in the flat layout of that version (``tests/data/v0.1``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unetseg.core.checkpoint import load_model, load_torch_safely, save_model
from napari_unetseg.core.config import PredictConfig, TrainConfig, upgrade_sections
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.prediction import predict_stack
from napari_unetseg.core.workflows import build_train_configs, train_from_files

V01 = Path(__file__).parent / "data" / "v0.1"


def test_a_model_file_of_0_1_predicts_as_it_did():
    loaded = load_model(V01 / "run" / "model.pt")
    # from its own entry in the file; 0.1 scaled each slice with the whole stack's percentiles,
    # without the floor under the range of nearly empty images
    assert loaded.normalization == Normalization(low=2.0, high=99.5, scope="stack", min_range=0.0)
    image = tifffile.imread(V01 / "image.tif")
    result = predict_stack(loaded, image[:, None], PredictConfig(precision="fp32"), probabilities=True)
    expected = tifffile.imread(V01 / "expected_labels.tif")
    assert set(np.unique(expected)) == {1, 2}  # the reference is not trivial
    np.testing.assert_array_equal(result.labels, expected)
    np.testing.assert_allclose(result.probabilities, np.load(V01 / "expected_probabilities.npy"), atol=1e-5)


def test_the_flat_train_section_of_0_1_reads_into_todays_layout():
    record = json.loads((V01 / "run" / "config.json").read_text())
    config = TrainConfig.from_dict(record["train"])
    assert config.learn_unpainted and config.consistency_weight() == 1.0
    assert config.advanced.consistency_zoom == 1.5 and config.advanced.labelled_sampling == 0.8
    assert config.advanced.smoothness_weight == 0.0 and config.steps_per_epoch == 50
    model, train = upgrade_sections(record["model"], record["train"])
    assert model["normalization"]["low"] == 2.0 and "percentile_low" not in train
    # a 0.1 --config file: every research option lands in advanced, the percentile in the model
    spec, config = build_train_configs({}, {}, V01 / "legacy_config.json")
    assert spec.base_channels == 4 and spec.normalization == Normalization(low=0.5, high=99.8)
    assert config.steps == 3 and config.tries == 2 and config.learn_unpainted
    advanced = config.advanced
    assert (advanced.consistency_weight, advanced.consistency_zoom, advanced.smoothness_weight) == (10, 1, 10)
    assert (advanced.try_steps, advanced.prior_correction, advanced.dice_weight) == (1, False, 0.5)
    assert advanced.weight_decay == 0.001 and advanced.class_balance is True


def test_a_run_folder_of_0_1_resumes_with_its_recipe(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(V01 / "run", run)
    result = train_from_files(
        [V01 / "image.tif"], [V01 / "strokes.tif"], None, train_options={"steps": 103}, resume=run
    )
    assert result.loaded.step == 103 and not result.stopped
    assert result.loaded.normalization == Normalization(low=2.0, high=99.5, scope="stack", min_range=0.0)
    record = json.loads((run / "config.json").read_text())  # rewritten in today's layout
    assert record["train"]["learn_unpainted"] and record["train"]["advanced"]["consistency_weight"] == 1.0
    expected = {"method": "percentile", "low": 2.0, "high": 99.5, "scope": "stack", "min_range": 0.0}
    assert record["model"]["normalization"] == expected
    assert [row["step"] for row in json.loads((run / "history.json").read_text())] == [50, 100, 103]


def test_todays_model_files_keep_the_0_1_layout(tmp_path):
    """The spec entry holds the network only (as 0.1 wrote it), so 0.1 can still read new files."""
    old = load_torch_safely(V01 / "run" / "model.pt")
    path = save_model(load_model(V01 / "run" / "model.pt"), tmp_path / "model.pt")
    new = torch.load(path, weights_only=True)
    assert set(new["spec"]) == set(old["spec"]) and new["normalization"] == old["normalization"]
    assert new["normalization_scope"] == "stack"  # beside, where 0.1 does not look
    assert new["normalization_min_range"] == 0.0  # so is the floor, off for files without it
    assert new["format_version"] == old["format_version"]
