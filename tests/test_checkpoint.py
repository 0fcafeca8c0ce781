"""Model files load without running code; bad files get clear messages."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from napari_unetseg.core.checkpoint import LoadedModel, load_model, save_model
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.models import build_model
from napari_unetseg.core.normalization import Normalization


class _Payload:
    """Writes a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model_file(tmp_path):
    spec = ModelSpec(depth=2, base_channels=4)
    return save_model(LoadedModel(build_model(spec), spec, (1, 2)), tmp_path / "m.pt")


def test_pickle_payload_refused_and_marker_not_written(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    good = torch.load(_model_file(tmp_path), weights_only=True)
    good["history"] = [_Payload(str(marker))]
    with open(path, "wb") as f:
        torch.save(good, f, pickle_protocol=2)
    with pytest.raises(UserInputError, match="refusing to load"):
        load_model(path)
    assert not marker.exists()
    with open(path, "wb") as f:  # a bare pickle, not even a torch zip
        pickle.dump(_Payload(str(marker)), f)
    with pytest.raises(UserInputError):
        load_model(path)
    assert not marker.exists()


def test_truncated_newer_and_foreign_files(tmp_path):
    path = _model_file(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match="model"):
        load_model(truncated)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(UserInputError, match="upgrade"):
        load_model(tmp_path / "new.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserInputError, match="not a napari-unetseg model"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(UserInputError):
        load_model(tmp_path / "text.pt")
    with pytest.raises(UserInputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_failed_save_keeps_previous_model_file(tmp_path):
    path = _model_file(tmp_path)
    before = path.read_bytes()
    spec = ModelSpec(depth=2, base_channels=4)
    other = LoadedModel(build_model(spec), spec, (1, 2))
    original = torch.save

    def exploding_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    torch.save = exploding_save
    try:
        with pytest.raises(OSError):
            save_model(other, path)
    finally:
        torch.save = original
    assert path.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


def test_the_normalisation_floor_travels_with_the_model_file(tmp_path):
    """A new model file keeps its floor (``min_range``); one written before the floor
    existed (no entry) loads without it, so it predicts what it predicted."""
    assert load_model(_model_file(tmp_path)).normalization.min_range == Normalization().min_range > 0
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["normalization_min_range"]
    torch.save(payload, tmp_path / "before.pt")
    assert load_model(tmp_path / "before.pt").normalization.min_range == 0.0


def test_the_object_zoom_travels_with_the_model_file(tmp_path):
    """A model that learnt its objects zoomed keeps that zoom; a file from before it (no
    entry) loads at 1 (as it was trained); a zoom that cannot be is a damaged file."""
    spec = ModelSpec(depth=2, base_channels=4, num_classes=3)
    zoomed = LoadedModel(build_model(spec), spec, (0, 1, 2), "dense", object_zoom=0.33)
    assert load_model(save_model(zoomed, tmp_path / "z.pt")).object_zoom == pytest.approx(0.33)
    payload = torch.load(tmp_path / "z.pt", weights_only=True)
    del payload["object_zoom"]
    torch.save(payload, tmp_path / "before.pt")
    assert load_model(tmp_path / "before.pt").object_zoom == 1.0
    payload["object_zoom"] = 0.0
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(UserInputError, match="damaged model file: its object zoom"):
        load_model(tmp_path / "bad.pt")
