"""Errors carry the options they concern; each front words them its own way."""

from __future__ import annotations

import pytest

from napari_unetseg.core.config import PredictConfig, TrainConfig
from napari_unetseg.core.errors import UserInputError


def test_fixes_are_named_by_the_front_or_left_out_where_it_has_no_such_option():
    error = UserInputError(
        "run already holds a model",
        ("resume it", "resume"),
        ("choose another run folder", "out"),
        ("overwrite it", "overwrite"),
    )
    assert str(error) == "run already holds a model: resume it, choose another run folder or overwrite it"
    cli = {"resume": "--resume", "out": "--out", "overwrite": "--overwrite"}
    assert error.worded(cli) == (
        "run already holds a model: resume it (--resume), choose another run folder (--out) "
        "or overwrite it (--overwrite)"
    )
    dock = {"resume": "'Resume'", "out": "'Run folder'"}  # the Train dock cannot overwrite
    assert (
        error.worded(dock)
        == "run already holds a model: resume it ('Resume') or choose another run folder ('Run folder')"
    )
    assert error.options == ("resume", "out", "overwrite")


def test_plain_fixes_show_everywhere_and_the_subject_is_named_first():
    error = UserInputError("the image is 4x4 pixels", "check the file", ("and its axes", "axes"))
    assert error.worded({}) == "the image is 4x4 pixels: check the file"
    assert (
        error.worded({"axes": "--axes"}) == "the image is 4x4 pixels: check the file or and its axes (--axes)"
    )
    with pytest.raises(UserInputError) as info:
        TrainConfig(steps=0)
    assert str(info.value) == "steps must be a number >= 1, got 0" and info.value.options == ("steps",)
    assert info.value.worded({"steps": "'Steps'"}) == "'Steps' must be a number >= 1, got 0"
    with pytest.raises(UserInputError) as info:
        PredictConfig(tile_size=8)
    assert info.value.worded({"tile_size": "--tile-size"}).startswith("--tile-size must be")
