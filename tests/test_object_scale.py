"""Objects at the scale the model learnt (core/object_scale.py): the sizes a model records,
the zoom prediction picks, and a trained model finding nuclei three times smaller."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk
from test_instances import touching_discs
from test_object_mode import nuclei_like, train_objects_by_cli, write_tiff

from napari_unetseg.core import object_scale
from napari_unetseg.core.object_scale import depth_range, largest_depths, learnt_range, zoom_for
from napari_unetseg.core.objects import object_scores


def discs(radii, shape=(200, 200), touching=False) -> np.ndarray:
    """Discs of the given radii on a row (apart, or each pressed into the one before)."""
    image = np.zeros(shape, np.uint16)
    x = 5
    for i, r in enumerate(radii, start=1):
        x += r
        rows, cols = disk((shape[0] // 2, x), r, shape=shape)
        free = image[rows, cols] == 0
        image[rows[free], cols[free]] = i
        x += r if touching else r + 4
    return image


def test_the_largest_depth_is_about_the_radius_and_does_not_grow_when_objects_merge():
    ids, depths = largest_depths(discs([5, 10, 20], shape=(60, 120)))
    assert ids.tolist() == [1, 2, 3]
    assert np.allclose(depths, [4, 9, 19], atol=1)  # the edge is the object's own outer ring
    apart = largest_depths(discs([10, 10, 10], touching=True))[1]
    merged = largest_depths((discs([10, 10, 10], touching=True) > 0).astype(np.uint16))[1]
    assert len(merged) == 1 and merged[0] <= apart.max() + 1  # three nuclei as one: the same size
    assert len(largest_depths(np.zeros((8, 8), np.uint16))[0]) == 0


def test_depth_range_takes_the_painted_objects_of_sparse_labels():
    plane = discs([4, 6, 8, 10, 12], shape=(60, 200)).astype(np.uint32)
    dense = depth_range([plane[None]], "dense")
    assert len(dense) == 3 and dense[0] < dense[1] < dense[2]
    assert dense[1] == pytest.approx(7, abs=1)
    painted = np.where(plane > 0, plane + 1, 0)  # objects 2.. as painted
    painted[:3, :] = 1  # a background stroke: not an object
    assert depth_range([painted[None]], "sparse") == pytest.approx(dense)
    assert depth_range([np.ones((1, 8, 8), np.uint32)], "sparse") == ()


def test_the_trainer_records_the_sizes_from_the_classes_own_distance_transform():
    """ObjectClasses takes the sizes from the pass that draws the classes: the same as
    depth_range's own, for dense and painted labels."""
    from napari_unetseg.core.instances import ObjectClasses, training_classes

    plane = discs([4, 6, 8, 10, 12], shape=(60, 200)).astype(np.uint32)
    painted = np.where(plane > 0, plane + 1, 0)
    painted[:3, :] = 1
    for labels, mode in ((np.stack([plane, plane[:, ::-1]]), "dense"), (painted[None], "sparse")):
        classes = ObjectClasses(mode, "unet")
        (found,) = classes([labels])
        assert np.array_equal(found, training_classes(labels, mode))
        assert classes.object_depths == depth_range([labels], mode)


def test_the_learnt_range_widens_with_the_training_zoom():
    assert learnt_range((4.0, 6.0, 9.0), {}) == (4.0, 6.0, 9.0)
    assert learnt_range((4.0, 6.0, 9.0), {"advanced": {"zoom": 2.0}}) == (2.0, 6.0, 18.0)
    assert learnt_range((), {}) is None  # a model file from before the sizes were recorded


def test_zoom_for_rescales_only_outside_the_learnt_range():
    learnt = (6.0, 9.0, 12.0)
    small = discs([3] * 8)
    large = discs([30, 30], shape=(200, 300))
    assert zoom_for(discs([9] * 6), discs([9] * 6), learnt, (200, 200)) == 1.0
    assert zoom_for(small, small, learnt, (200, 200)) == pytest.approx(9 / 2, rel=0.1)  # depth of r=3: 2
    assert zoom_for(large, large, learnt, (200, 300)) == pytest.approx(9 / 29, rel=0.1)
    assert zoom_for(small, small, None, (200, 200)) == 1.0
    # fewer objects than MIN_OBJECTS (the network found few cores): the foreground's pieces tell
    pieces = (discs([3] * 8) > 0).astype(np.uint16)
    pieces[pieces > 0] = ndimage.label(pieces)[0][pieces > 0]
    assert zoom_for(np.zeros_like(small), pieces, learnt, (200, 200)) == pytest.approx(4.5, rel=0.1)
    # never more than MAX_ZOOM, nor a slice of more than MAX_PIXELS
    tiny = discs([2] * 8)
    assert zoom_for(tiny, tiny, (40.0, 60.0, 80.0), (200, 200)) == object_scale.MAX_ZOOM
    assert zoom_for(tiny, tiny, (40.0, 60.0, 80.0), (2000, 2000)) == pytest.approx(4.0)  # 64 M pixels
    assert zoom_for(tiny, tiny, (40.0, 60.0, 80.0), (9000, 9000)) == 1.0  # already larger
    assert zoom_for(large, large, learnt, (100, 100)) == pytest.approx(0.64)  # not under 64 px a side
    assert zoom_for(large, large, learnt, (50, 50)) == 1.0


def test_a_model_finds_nuclei_three_times_smaller_than_it_learnt(tmp_path, cli):
    """Train on nuclei of radius 6-10, predict an image of the same nuclei at a third of
    the size: with the size match (the default) the model finds them, without it not; the
    same block by block (``--dask``)."""
    import tifffile

    from napari_unetseg.core.checkpoint import load_model

    rng = np.random.default_rng(0)
    objects = np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(3)])
    images = np.stack([nuclei_like(o, rng) for o in objects])
    big = touching_discs((288, 288), seed=7, n=110)
    small_truth = big[1::3, 1::3]  # the same nuclei, a third of the size
    write_tiff(tmp_path / "small.tif", ndimage.zoom(nuclei_like(big, rng), 1 / 3, order=1))
    model = train_objects_by_cli(cli, tmp_path, images, objects)
    assert load_model(model).object_depths == pytest.approx(depth_range([objects], "dense"))
    scores, told = {}, {}
    for name, flags in (("matched", []), ("plain", ["--no-size-match"]), ("blocks", ["--dask", "local:1"])):
        proc = cli("predict", "--model", model, "--out", tmp_path / name, tmp_path / "small.tif", *flags)
        assert proc.returncode == 0, proc.stderr
        scores[name] = object_scores(small_truth, tifffile.imread(tmp_path / name / "small.tif")).f1
        told[name] = [line.strip() for line in proc.stderr.splitlines() if "predicted again" in line]
    assert scores["matched"] > 0.6 and scores["matched"] > scores["plain"] + 0.2, scores
    assert told["plain"] == [] and len(told["matched"]) == 1, told  # the user is told, once
    assert told["matched"][0].startswith("small.tif: slice 1/1: objects of about"), told
    assert told["blocks"] == told["matched"] and scores["blocks"] == scores["matched"]  # block by block too


def test_slices_joined_into_3d_objects_are_not_matched_one_by_one():
    """A nucleus's top and bottom slices are small cuts of it: with ``--objects-3d`` no
    slice is predicted again, where each slice of its own is (counted by the progress)."""
    from test_object_mode import PixelClasses

    from napari_unetseg.core.checkpoint import LoadedModel
    from napari_unetseg.core.config import ModelSpec, PredictConfig
    from napari_unetseg.core.events import PredictProgress, ZoomEvent, run_generator
    from napari_unetseg.core.instances import CLASS_NAMES, instance_classes
    from napari_unetseg.core.object_sink import object_sink
    from napari_unetseg.core.prediction import iter_predict

    truth = np.stack([discs([3] * 8, shape=(64, 96))] * 2)
    image = np.choose(np.stack([instance_classes(p) for p in truth]), [0.0, 1.0, 0.5]).astype(np.float32)
    loaded = LoadedModel(PixelClasses(), ModelSpec(), (0, 1, 2), "dense", {"objects": True},
                         class_names=CLASS_NAMES, object_depths=(8.0, 12.0, 16.0))  # fmt: skip

    def passes(match_size: bool, volume: bool) -> tuple[int, list[ZoomEvent]]:
        found = np.zeros(truth.shape, np.uint32)
        sink = object_sink(loaded, found, len(truth), volume=volume)
        events = []
        config = PredictConfig(device="cpu", match_size=match_size)
        run_generator(iter_predict(loaded, image[:, None], config, labels_out=sink), events.append)
        assert found.max() > 0
        zooms = [e for e in events if isinstance(e, ZoomEvent)]
        return len([e for e in events if isinstance(e, PredictProgress)]), zooms

    once, none = passes(False, False)
    assert none == []
    twice, zooms = passes(True, False)
    assert twice == 2 * once  # every slice's nuclei are 3x too small: predicted again
    assert [z.slice_index for z in zooms] == [0, 1] and all(z.n_slices == 2 for z in zooms)
    assert zooms[0].zoom == pytest.approx(12 / 2, rel=0.2) and zooms[0].size == pytest.approx(2, abs=0.5)
    assert "slice 1/2: objects of about 2.0 px radius, the model learnt 8.0-16.0" in zooms[0].describe()
    assert passes(True, True) == (once, [])


def test_a_slice_not_zoomed_gets_its_objects_from_one_watershed(monkeypatch):
    """The size match reads a slice's size from its objects: when the slice is not zoomed,
    those objects go to the sink as they are (the same as the sink's own), and the seeded
    watershed runs once per slice, not twice."""
    from test_object_mode import PixelClasses

    from napari_unetseg.core import instances
    from napari_unetseg.core.checkpoint import LoadedModel
    from napari_unetseg.core.config import ModelSpec, PredictConfig
    from napari_unetseg.core.instances import CLASS_NAMES, instance_classes
    from napari_unetseg.core.object_sink import object_sink
    from napari_unetseg.core.prediction import predict_stack

    truth = np.stack([discs([3, 5, 4, 6, 3, 5], shape=(64, 96)), discs([4] * 7, shape=(64, 96))])
    image = np.choose(np.stack([instance_classes(p) for p in truth]), [0.0, 1.0, 0.5]).astype(np.float32)
    loaded = LoadedModel(PixelClasses(), ModelSpec(), (0, 1, 2), "dense", {"objects": True},
                         class_names=CLASS_NAMES, object_depths=(2.0, 3.0, 5.0))  # fmt: skip
    calls = []
    watershed = instances.instances_from_classes
    monkeypatch.setattr(
        instances, "instances_from_classes", lambda *a, **k: calls.append(1) or watershed(*a, **k)
    )

    def objects(match_size: bool) -> np.ndarray:
        found = np.zeros(truth.shape, np.uint32)
        config = PredictConfig(device="cpu", match_size=match_size)
        predict_stack(loaded, image[:, None], config, labels_out=object_sink(loaded, found, len(truth)))
        return found

    plain = objects(False)
    assert len(calls) == 2
    calls.clear()
    matched = objects(True)
    assert len(calls) == 2  # once per slice: the size match's objects are the sink's
    assert np.array_equal(matched, plain) and len(np.unique(matched[1])) == 8  # 7 discs, numbered on


def test_training_zoom_brings_large_objects_to_the_depth_learnt():
    """Objects deeper than TRAIN_DEPTH (median) are learnt zoomed to it, never so far that
    an image gets a side under the patch; smaller ones (or none) as they are."""
    from napari_unetseg.core.object_scale import TRAIN_DEPTH, training_zoom

    assert training_zoom((5.0, 8.0, 12.0), [(256, 256)], 128) == 1.0
    assert training_zoom((), [(256, 256)], 128) == 1.0
    assert training_zoom((30.0, 4 * TRAIN_DEPTH, 90.0), [(1024, 1280)], 128) == pytest.approx(0.25)
    assert training_zoom((30.0, 4 * TRAIN_DEPTH, 90.0), [(1024, 1280), (300, 400)], 128) == pytest.approx(
        128 / 300
    )


def test_large_nuclei_are_learnt_and_predicted_zoomed(tmp_path, cli):
    """Nuclei of radius 18-30 px are learnt at the zoom that brings them to TRAIN_DEPTH: the
    model file records that zoom and the sizes as labelled, the preview and ``unetseg
    predict`` (one process or block by block) see every image so and give the objects at
    the image's own size."""
    import tifffile

    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.object_scale import TRAIN_DEPTH

    rng = np.random.default_rng(0)
    small = np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(3)])
    objects = ndimage.zoom(small, (1, 3, 3), order=0)  # radius 18-30
    images = np.stack([nuclei_like(o, rng) for o in objects]) * 1.0
    test_truth = ndimage.zoom(touching_discs((96, 96), seed=9, n=14), 3, order=0)
    write_tiff(tmp_path / "large.tif", nuclei_like(test_truth, rng))
    model = train_objects_by_cli(cli, tmp_path, images, objects)
    loaded = load_model(model)
    assert loaded.object_depths == pytest.approx(depth_range([objects], "dense"))  # as labelled
    assert loaded.object_zoom == pytest.approx(TRAIN_DEPTH / loaded.object_depths[1])
    assert 0.4 < loaded.object_zoom < 0.9
    found = {}
    for name, flags in (("one", []), ("blocks", ["--dask", "local:1"])):
        proc = cli("predict", "--model", model, "--out", tmp_path / name, tmp_path / "large.tif", *flags)
        assert proc.returncode == 0, proc.stderr
        found[name] = tifffile.imread(tmp_path / name / "large.tif")
    assert found["one"].shape == test_truth.shape
    assert object_scores(test_truth, found["one"]).f1 > 0.8
    assert np.array_equal(found["blocks"], found["one"])
    # nuclei three times smaller than those learnt: predicted again at the image's own 3x the
    # model's zoom, and the line says so
    small_truth = touching_discs((96, 96), seed=9, n=14)
    write_tiff(tmp_path / "small.tif", nuclei_like(small_truth, rng))
    proc = cli("predict", "--model", model, "--out", tmp_path / "small", tmp_path / "small.tif")
    assert proc.returncode == 0, proc.stderr
    (told,) = [line for line in proc.stderr.splitlines() if "predicted again" in line]
    zoom = float(told.rsplit(" at ", 1)[1].rstrip("x"))
    assert zoom == pytest.approx(3 * loaded.object_zoom, rel=0.3), told
    assert object_scores(small_truth, tifffile.imread(tmp_path / "small" / "small.tif")).f1 > 0.6


def test_a_run_that_learns_zoomed_previews_at_the_image_size():
    """The Train dock's preview of a run of large objects is predicted zoomed and shown
    at the slice's own size; label updates of the image's size are taken (zoomed too)."""
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.events import LabelsEvent, PreviewEvent
    from napari_unetseg.core.jobs import start_training

    rng = np.random.default_rng(1)
    objects = ndimage.zoom(
        np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(2)]), (1, 3, 3), order=0
    )
    images = np.stack([nuclei_like(o, rng) for o in objects])[:, None]
    config = TrainConfig(steps=4, objects=True, label_mode="dense", patch_size=64, batch_size=2, device="cpu")
    trainer = start_training([images], [objects], ModelSpec(depth=2, base_channels=8), config, RunOptions())
    assert trainer.object_zoom < 1
    trainer.preview_every = 2
    trainer.set_preview(1)
    events = []
    run = trainer.run()
    events.append(next(run))
    trainer.update_labels([objects])
    events += list(run)
    previews = [e for e in events if isinstance(e, PreviewEvent)]
    assert previews and all(p.labels.shape == (288, 288) for p in previews)
    assert [e.accepted for e in events if isinstance(e, LabelsEvent)] == [True]


def test_painted_objects_learnt_zoomed_keep_a_band_of_background_as_painted():
    """The unpainted pixels just outside a painted object are background within OUTSIDE
    pixels as painted: zoomed to 0.4x, within one pixel of the zoomed object, not two."""
    from napari_unetseg.core.instances import OUTSIDE, ObjectClasses

    plane = np.zeros((200, 200), np.uint16)
    plane[disk((100, 100), 60)] = 2  # one painted object, nothing else painted
    classes = ObjectClasses("sparse", "unet")
    classes.zoom = 0.4
    (learnt,) = classes([plane[None]])
    assert learnt.shape == (1, 80, 80)
    inside = learnt[0] >= 2
    band = (learnt[0] == 1) & ~inside
    assert band.any() and ndimage.binary_dilation(inside, iterations=1)[band].all()  # one pixel wide
    (native,) = ObjectClasses("sparse", "unet")([plane[None]])
    native_band = native[0] == 1
    assert ndimage.binary_dilation(native[0] >= 2, iterations=OUTSIDE)[native_band].all()
    assert not ndimage.binary_dilation(native[0] >= 2, iterations=1)[native_band].all()  # two wide there
