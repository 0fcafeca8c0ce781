"""The ``unetseg`` command line, run as a user would (subprocesses, real files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_unetseg.core.sample import make_sample


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    sample = make_sample(n_slices=3, size=96, painted_slices=2, seed=2)
    paths = {}
    for name in ("image", "strokes", "truth"):
        paths[name] = folder / f"{name}.tif"
        tifffile.imwrite(
            paths[name], getattr(sample, name), metadata={"axes": "ZYX"}, photometric="minisblack"
        )
    paths["small"] = folder / "small.tif"
    tifffile.imwrite(paths["small"], np.ones((2, 50, 50), np.uint8), metadata={"axes": "ZYX"})
    return folder, paths


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    import subprocess
    import sys

    folder, paths = files
    run = folder / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_unetseg",
            "train",
            "--images",
            paths["image"],
            "--labels",
            paths["strokes"],
            "--out",
            run,
            "--class-names",
            "background,nucleus",
            "--steps",
            "40",
            "--patch-size",
            "64",
            "--batch-size",
            "4",
            "--depth",
            "2",
            "--base-channels",
            "8",
            "--device",
            "cpu",
            "--lr",
            "0.005",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return run


def test_help_everywhere(cli):
    for args in ([], ["train"], ["predict"], ["evaluate"], ["prune"], ["demo"], ["models"]):
        proc = cli(*args, "--help")
        assert proc.returncode == 0 and "usage" in proc.stdout


def test_models_lists_registry(cli):
    from napari_unetseg.core.models import MODELS

    proc = cli("models")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line and not line.startswith("(")]
    assert listed == list(MODELS)
    assert " M  " in proc.stdout  # sizes


@pytest.fixture
def one_thread():
    """Run torch on one thread: these nets take three steps, threads buy nothing, and the
    thread team of oneDNN's conv backward hung in CI twice on this test (an OpenMP barrier
    that never released, as in pytorch/pytorch#91547)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "model",
    ["unetplusplus", "unet3plus", "fcn8s", "fcn16s", "fcn32s", "deeplabv3plus", "unet3d", "unetplusplus3d"],
)
def test_every_architecture_trains_and_predicts_from_the_cli(files, tmp_path, model, capsys):
    """``unetseg train --model NAME`` then ``predict`` (in-process: same code, no start-up)."""
    from napari_unetseg.cli import main

    _, paths = files
    run, out = tmp_path / "run", tmp_path / "pred"
    train = ["train", "--images", str(paths["image"]), "--labels", str(paths["strokes"]), "--out", str(run)]
    small = [
        "--model",
        model,
        "--steps",
        "3",
        "--patch-size",
        "64",
        "--batch-size",
        "2",
        "--base-channels",
        "4",
    ]
    volumes = ["--anisotropy", "2", "--patch-depth", "2"] if model.endswith("3d") else []
    assert main([*train, *small, *volumes, "--depth", "2", "--device", "cpu"]) == 0
    model_file = run / "model.pt"
    if model == "unetplusplus":  # prune to the first head and predict with the smaller file
        pruned_file = tmp_path / "model_L1.pt"
        assert main(["prune", "--model", str(model_file), "--head", "1", "--out", str(pruned_file)]) == 0
        assert pruned_file.stat().st_size < model_file.stat().st_size
        model_file = pruned_file
    predict = ["predict", "--model", str(model_file), "--out", str(out), str(paths["image"])]
    assert main([*predict, "--device", "cpu", "--tile-depth", "4"]) == 0
    labels = tifffile.imread(out / "image.tif")
    assert labels.shape == (3, 96, 96) and set(np.unique(labels)) <= {1, 2}
    capsys.readouterr()


def test_train_writes_run_folder(trained):
    for name in ("model.pt", "config.json", "history.csv", "history.json", "resume.pt"):
        assert (trained / name).is_file()
    history = json.loads((trained / "history.json").read_text())
    assert history[-1]["step"] == 40


def test_predict_evaluate_roundtrip(cli, files, trained, tmp_path):
    _, paths = files
    out = tmp_path / "pred"
    proc = cli(
        "predict",
        "--model",
        trained / "model.pt",
        "--out",
        out,
        paths["image"],
        "--tile-size",
        "64",
        "--probabilities",
        "--tta",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    labels = tifffile.imread(out / "image.tif")
    probs = tifffile.imread(out / "image_probabilities.tif")
    assert labels.shape == (3, 96, 96) and set(np.unique(labels)) <= {1, 2}
    assert probs.shape == (3, 2, 96, 96)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    # refuses to overwrite, then does with --overwrite
    again = cli("predict", "--model", trained, "--out", out, paths["image"])
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cli("predict", "--model", trained, "--out", out, paths["image"], "--overwrite").returncode == 0
    report = tmp_path / "scores.json"
    proc = cli(
        "evaluate",
        "--prediction",
        out / "image.tif",
        "--truth",
        paths["truth"],
        "--json",
        report,
        "--csv",
        tmp_path / "scores.csv",
    )
    assert proc.returncode == 0, proc.stderr
    assert "dice" in proc.stdout and "mean" in proc.stdout
    scores = json.loads(report.read_text())
    assert set(scores["dice"]) == {"1", "2"} and set(scores["iou"]) == {"1", "2"}
    assert 0 <= scores["dice"]["2"] <= 1
    # the names given to unetseg train reach the label TIFF, the table, the JSON and the CSV
    assert scores["class_names"] == {"1": "background", "2": "nucleus"} and scores["foreground"] == [2]
    assert "2 nucleus" in proc.stdout and "headline: nucleus Dice" in proc.stdout
    table = (tmp_path / "scores.csv").read_text()
    assert table.startswith("scope,class,name,dice") and "all,2,nucleus," in table
    assert not proc.stderr
    # a ground truth numbered 0/1 against predictions 1/2: scored, with a warning that says why
    shifted = tmp_path / "truth01.tif"
    truth01 = (tifffile.imread(paths["truth"]) - 1).astype(np.uint8)
    tifffile.imwrite(shifted, truth01, metadata={"axes": "ZYX"}, photometric="minisblack")
    proc = cli("evaluate", "--prediction", out / "image.tif", "--truth", shifted)
    assert proc.returncode == 0 and "number the classes differently" in proc.stderr
    assert "truth 0 ~ prediction 1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    named = cli(
        "evaluate", "--prediction", out / "image.tif", "--truth", paths["truth"], "--class-names", "a"
    )
    assert named.returncode == 2 and "--class-names" in named.stderr and "1 class names for 2" in named.stderr


def test_resume_and_finetune_from_cli(cli, files, trained, tmp_path):
    _, paths = files
    proc = cli(
        "train",
        "--images",
        paths["image"],
        "--labels",
        paths["strokes"],
        "--resume",
        trained,
        "--steps",
        "45",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((trained / "history.json").read_text())[-1]["step"] == 45
    proc = cli(
        "train",
        "--images",
        paths["image"],
        "--labels",
        paths["truth"],
        "--dense",
        "--out",
        tmp_path / "ft",
        "--init",
        trained / "model.pt",
        "--steps",
        "3",
        "--patch-size",
        "64",
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--images", "{image}", "--labels", "{missing}", "--out", "{tmp}/r"], "does not exist"),
        (
            ["train", "--images", "{image}", "--labels", "{image}", "{image}", "--out", "{tmp}/r"],
            "one label file per image",
        ),
        (
            ["train", "--images", "{image}", "--labels", "{strokes}", "--out", "{tmp}/r", "--steps", "0"],
            "steps must be",
        ),
        (
            ["train", "--images", "{image}", "--labels", "{strokes}", "--out", "{tmp}/r", "--model", "vgg"],
            "unknown model",
        ),
        (
            ["train", "--images", "{image}", "--labels", "{strokes}", "--out", "{tmp}/r", "--axes", "TZYX"],
            "4 letters",
        ),
        (["predict", "--model", "{image}", "--out", "{tmp}/p", "{image}"], "model file"),
        (["prune", "--model", "{model}", "--head", "1", "--out", "{tmp}/p.pt"], "only UNet++"),
        (["predict", "--model", "{tmp}", "--out", "{tmp}/p", "{image}"], "model.pt"),
        (["evaluate", "--prediction", "{small}", "--truth", "{strokes}"], "differs from ground truth"),
        (["evaluate", "--prediction", "{strokes}", "--truth", "{missing}"], "does not exist"),
        (["train", "--images", "{small}", "--labels", "{strokes}", "--out", "{tmp}/r"], "does not match"),
        (
            [
                "train",
                "--images",
                "{image}",
                "--labels",
                "{strokes}",
                "--out",
                "{tmp}/r",
                "--tries",
                "2",
                "--steps",
                "4",
                "--try-steps",
                "4",
            ],
            "must be fewer steps than the run (4): ask for more steps (--steps)",
        ),
    ],
)
def test_bad_input_exit_2_one_line(cli, files, trained, tmp_path, args, message):
    _, paths = files
    fmt = {**paths, "missing": tmp_path / "nope.tif", "tmp": tmp_path, "model": trained / "model.pt"}
    proc = cli(*[a.format(**fmt) for a in args])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_train_with_tries_keeps_one_seed_and_says_which(files, tmp_path, capsys):
    from napari_unetseg.cli import main

    _, paths = files
    run = tmp_path / "run"
    args = ["train", "--images", str(paths["image"]), "--labels", str(paths["strokes"]), "--out", str(run)]
    small = ["--steps", "8", "--tries", "2", "--patch-size", "64", "--batch-size", "2", "--depth", "2"]
    assert main([*args, *small, "--base-channels", "4", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "try 1/2: seed 0, 2 steps" in err and "try 2/2: seed 1, 2 steps" in err
    kept = json.loads((run / "config.json").read_text())["tries"]["kept"]
    assert f"kept seed {kept} (mean loss over steps 2-2: seed 0: " in err
    assert json.loads((run / "history.json").read_text())[-1]["step"] == 8


def test_demo_end_to_end(cli, tmp_path):
    proc = cli("demo", "--out", tmp_path / "demo", "--steps", "30", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "dice" in proc.stdout and "nucleus class (2)" in proc.stdout
    assert (tmp_path / "demo" / "prediction" / "image.tif").is_file()
    # running it again reuses its own folder; a foreign folder is refused
    assert cli("demo", "--out", tmp_path / "demo", "--steps", "2", "--device", "cpu").returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    proc = cli("demo", "--out", tmp_path / "mine", "--steps", "2")
    assert proc.returncode == 2 and "not made by the demo" in proc.stderr


def test_learn_unpainted_and_the_defaults_reach_the_run(files, tmp_path, capsys):
    from napari_unetseg.cli import main
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.config import TrainConfig

    _, paths = files
    run = tmp_path / "run"
    args = ["train", "--images", str(paths["image"]), "--labels", str(paths["strokes"]), "--out", str(run)]
    small = [
        "--steps",
        "3",
        "--patch-size",
        "32",
        "--batch-size",
        "2",
        "--depth",
        "2",
        "--base-channels",
        "4",
    ]
    assert main([*args, *small, "--learn-unpainted", "--device", "cpu"]) == 0
    saved = TrainConfig.from_dict(load_model(run / "model.pt").train_config)
    assert saved.learn_unpainted and saved.consistency_weight() > 0
    default = TrainConfig()  # every flag not given keeps the config class's default
    assert (saved.validation_fraction, saved.learning_rate, saved.seed) == (
        default.validation_fraction,
        default.learning_rate,
        default.seed,
    )
    assert saved.advanced == default.advanced


def test_an_internal_error_is_one_line_unless_debug(files, tmp_path, capsys, monkeypatch):
    from napari_unetseg import cli
    from napari_unetseg.core import workflows

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(workflows, "evaluate_files", broken)
    _, paths = files
    args = ["evaluate", "--prediction", str(paths["strokes"]), "--truth", str(paths["strokes"])]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "simulated bug" in err and "--debug shows the traceback" in err
    assert cli.main(["--debug", *args]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "simulated bug" in err
