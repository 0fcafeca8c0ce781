"""Model exchange with bioimage.io: export a model file as a model package, and open one.

:func:`export_package` writes a bioimage.io model package (model spec 0.5, through
bioimageio.spec) that bioimageio.core, ilastik, deepImageJ, QuPath and the BioImage
Model Zoo read:

* weights as ``pytorch_state_dict`` with the architecture's source (one Python file made
  from this package's own network modules, :func:`architecture_source`) and as
  ``torchscript`` (for the Java tools);
* preprocessing that reproduces ours: each channel of each sample scaled from its own
  percentiles (``scale_range`` over the spatial axes), except on nearly empty images,
  where ours keeps a floor under the range that ``scale_range`` cannot express
  (``Normalization.min_range``; the card says so);
* postprocessing: the class-prior correction (``scale_linear`` offsets along the channel
  axis) then ``softmax``: the output is the class probabilities, one channel per class;
* a test input and the output it gives, a cover image, the class names and values, and a
  model card (README.md) from the model file's metadata;
* ``config.napari_unetseg``: the model file's recipe, so the package opens back in this
  tool (:func:`load_package`) and predicts what the model file predicts.

Packages this tool did not export are refused with what they lack: the recipe (class
values, normalisation) is not in the bioimage.io description in a form we can use.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_unetseg import __version__
from napari_unetseg.core.checkpoint import LoadedModel, model_from_payload
from napari_unetseg.core.errors import UserInputError

CONFIG_KEY = "napari_unetseg"
ARCHITECTURE_FILE = "napari_unetseg_architecture.py"
SPEC_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip file that holds a bioimage.io description."""
    path = Path(path)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[-1] in SPEC_NAMES for name in archive.namelist())


def architecture_source(network: type) -> str:
    """One self-contained Python file defining ``network``: the shared blocks module of
    this package, then the network's own module, without their docstrings and imports
    from this package (generated from the installed source: it is the same code)."""
    from napari_unetseg.core.models import blocks

    modules = [blocks] + ([inspect.getmodule(network)] if inspect.getmodule(network) is not blocks else [])
    parts = []
    for module in modules:
        source = inspect.getsource(module)
        lines = source.splitlines(keepends=True)
        drop = set()
        for index, node in enumerate(ast.parse(source).body):
            docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            ours = isinstance(node, ast.ImportFrom) and (
                node.module == "__future__" or (node.module or "").startswith("napari_unetseg")
            )
            if docstring or ours:
                drop.update(range(node.lineno - 1, node.end_lineno))
        parts.append("".join(line for i, line in enumerate(lines) if i not in drop).strip() + "\n")
    header = f'"""{network.__name__} of napari-unetseg {__version__}, as one file for bioimage.io."""\n\n'
    return header + "from __future__ import annotations\n\n" + "\n\n".join(parts)


def load_package(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """The model of a bioimage.io package that napari-unetseg exported (its recipe from
    ``config.napari_unetseg``, its weights from the ``pytorch_state_dict`` entry)."""
    import yaml

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            spec_name = next(n for n in names if n.split("/")[-1] in SPEC_NAMES)
            description = yaml.safe_load(archive.read(spec_name))
            recipe = (description.get("config") or {}).get(CONFIG_KEY)
            if recipe is None:
                weights = ", ".join(sorted((description.get("weights") or {}).keys())) or "none"
                raise UserInputError(
                    f"{path} is a bioimage.io model napari-unetseg cannot run: it was not exported by "
                    f"napari-unetseg (no config.{CONFIG_KEY} with its classes and normalisation; "
                    f"weights: {weights})",
                    "use the tool it was made for, or a napari-unetseg model file",
                )
            source = description["weights"]["pytorch_state_dict"]["source"]
            state = torch.load(io.BytesIO(archive.read(source)), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, KeyError, StopIteration, OSError, yaml.YAMLError) as exc:
        raise UserInputError(
            f"{path} is a damaged bioimage.io package ({type(exc).__name__}: {exc})"
        ) from exc
    return model_from_payload({**recipe, "state_dict": state}, path, device)


def export_package(
    model: LoadedModel | str | os.PathLike,
    out: str | os.PathLike,
    sample: np.ndarray | None = None,
    overwrite: bool = False,
    authors: tuple[str, ...] = (),
) -> Path:
    """Write ``model`` (a model file, a package this tool exported, or a model in memory) as
    a bioimage.io model package ``out`` (a ``.zip``), atomically. ``sample``: a ``(C, Y, X)`` (3D models:
    ``(C, Z, Y, X)``) image for the test input and the cover; a synthetic one by default."""
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError as exc:
        raise UserInputError(
            "needs bioimageio.spec, which is not installed: pip install 'napari-unetseg[bioimageio]'"
        ) from exc
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.io import atomic_write

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise UserInputError(f"{out} is not a .zip file name", ("give one such as model.zip", "out"))
    if out.exists() and not overwrite:
        raise UserInputError(
            f"{out} already exists", ("choose another file", "out"), ("replace it", "overwrite")
        )
    if not out.parent.is_dir():
        raise UserInputError(f"output folder {out.parent} does not exist", ("create it first", "out"))
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    source = "the Train dock" if isinstance(model, LoadedModel) else f"`{Path(model).name}`"
    image = _test_image(loaded, sample)
    with tempfile.TemporaryDirectory() as folder:
        descr = _describe(loaded, source, image, Path(folder), authors)
        package = Path(folder) / "package.zip"
        save_bioimageio_package(descr, output_path=package)
        atomic_write(out, lambda tmp: shutil.copyfile(package, tmp))
    return out


CITATIONS = {  # the paper of each network family (DOIs: checked without a network)
    "UNet": ("Ronneberger, Fischer and Brox, U-Net: Convolutional Networks for Biomedical Image "
             "Segmentation, MICCAI 2015", "10.1007/978-3-319-24574-4_28"),
    "UNetPlusPlus": ("Zhou et al., UNet++: Redesigning Skip Connections to Exploit Multiscale Features "
                     "in Image Segmentation, IEEE TMI 2020", "10.1109/TMI.2019.2959609"),
    "UNet3Plus": ("Huang et al., UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation, "
                  "ICASSP 2020", "10.1109/ICASSP40776.2020.9053405"),
    "FCN": ("Long, Shelhamer and Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015",
            "10.1109/CVPR.2015.7298965"),
    "DeepLabV3Plus": ("Chen et al., Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
                      "Segmentation, ECCV 2018", "10.1007/978-3-030-01234-2_49"),
}  # fmt: skip


def _test_image(loaded: LoadedModel, sample: np.ndarray | None) -> np.ndarray:
    """The test input ``(C, [Z,] Y, X)``: ``sample`` cropped to whole multiples of the
    network's pooling (at most 512 px a side), or a synthetic nuclei image."""
    from napari_unetseg.core.sample import make_sample

    multiples = loaded.model.multiples
    if sample is None:
        volume = make_sample(
            n_slices=max(multiples[0], 16) if len(multiples) == 3 else 1, size=256, seed=0
        ).image
        plane = volume if len(multiples) == 3 else volume[0]
        sample = np.repeat(plane[None], loaded.spec.in_channels, axis=0)
    sample = np.asarray(sample, np.float32)
    if sample.ndim != len(multiples) + 1 or sample.shape[0] != loaded.spec.in_channels:
        raise UserInputError(
            f"the sample image has shape {sample.shape}; the model takes "
            f"{loaded.spec.in_channels} channel(s) and {len(multiples)} spatial axes",
            ("give an image like the ones it was trained on", "sample"),
        )
    limit = [max(m, (min(n, 512) // m) * m) for n, m in zip(sample.shape[1:], multiples)]
    if any(n < m for n, m in zip(sample.shape[1:], multiples)):
        raise UserInputError(
            f"the sample image {sample.shape[1:]} is smaller than {multiples}", subject="sample"
        )
    return np.ascontiguousarray(sample[(slice(None), *(slice(0, n) for n in limit))])


def _reference_output(loaded: LoadedModel, image: np.ndarray) -> np.ndarray:
    """What the package's pipeline gives for ``image``: per-channel percentile scaling
    (bioimage.io's ``scale_range``), the network, the prior correction, softmax."""
    recipe = loaded.normalization
    axes = tuple(range(1, image.ndim))
    low = np.percentile(image, recipe.low, axis=axes, keepdims=True)
    high = np.percentile(image, recipe.high, axis=axes, keepdims=True)
    scaled = ((image - low) / (high - low + 1e-6)).astype(np.float32)
    with torch.inference_mode():
        logits = loaded.model.eval().float()(torch.from_numpy(scaled[None]))[0].numpy()
    logits = loaded.adjust(logits)
    return torch.softmax(torch.from_numpy(logits), 0).numpy()[None].astype(np.float32)


def _describe(loaded: LoadedModel, source: str, image: np.ndarray, folder: Path, authors) -> Any:
    """The bioimage.io model description of ``loaded``, its files written to ``folder``."""
    from bioimageio.spec.model import v0_5 as bio

    from napari_unetseg.core.models import MODELS

    entry = MODELS[loaded.spec.name]
    spatial = ["z", "y", "x"][-(image.ndim - 1) :]
    test_output = _reference_output(loaded, image)
    np.save(folder / "test_input.npy", image[None])
    np.save(folder / "test_output.npy", test_output)
    tifffile.imwrite(folder / "sample_input.tif", image[None], photometric="minisblack")
    tifffile.imwrite(folder / "sample_output.tif", test_output, photometric="minisblack")
    (folder / ARCHITECTURE_FILE).write_text(architecture_source(entry.network))
    state = {key: value.detach().cpu() for key, value in loaded.model.state_dict().items()}
    torch.save(state, folder / "weights.pt")
    with warnings.catch_warnings():  # inputs are whole multiples of the pooling: no padding branch
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(loaded.model.eval().float(), torch.from_numpy(np.zeros_like(image[None])))
    traced.save(str(folder / "weights_torchscript.pt"))
    _write_cover(folder / "cover.png", image, test_output[0].argmax(0))
    (folder / "README.md").write_text(_model_card(loaded, source, spatial))
    names = [_identifier(loaded.name_of(v) or f"class {v}") for v in loaded.class_values]
    channels = [bio.Identifier(f"channel{i}") for i in range(loaded.spec.in_channels)]
    multiples = loaded.model.multiples
    inputs = bio.InputTensorDescr(
        id=bio.TensorId("raw"),
        description="the image, one or more channels, any intensity range",
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=channels)]
        + [bio.SpaceInputAxis(id=bio.AxisId(a), size=bio.ParameterizedSize(min=m, step=m))
           for a, m in zip(spatial, multiples)],
        test_tensor=bio.FileDescr(source=folder / "test_input.npy"),
        sample_tensor=bio.FileDescr(source=folder / "sample_input.tif"),
        preprocessing=[
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
            bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
                axes=[bio.AxisId(a) for a in spatial], min_percentile=loaded.normalization.low,
                max_percentile=loaded.normalization.high)),
        ],
    )  # fmt: skip
    post = []
    if loaded.logit_bias:
        post.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearAlongAxisKwargs(
            axis=bio.AxisId("channel"), offset=[float(b) for b in loaded.logit_bias])))  # fmt: skip
    post.append(bio.SoftmaxDescr(kwargs=bio.SoftmaxKwargs(axis=bio.AxisId("channel"))))
    outputs = bio.OutputTensorDescr(
        id=bio.TensorId("probabilities"),
        description="class probabilities, one channel per class (labels: the most probable class)",
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=names)]
        + [bio.SpaceOutputAxis(id=bio.AxisId(a), size=bio.SizeReference(
            tensor_id=bio.TensorId("raw"), axis_id=bio.AxisId(a))) for a in spatial],
        test_tensor=bio.FileDescr(source=folder / "test_output.npy"),
        sample_tensor=bio.FileDescr(source=folder / "sample_output.tif"),
        postprocessing=post,
    )  # fmt: skip
    pytorch = bio.Version(torch.__version__.split("+")[0])
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=bio.ArchitectureFromFileDescr(
                source=folder / ARCHITECTURE_FILE, callable=bio.Identifier(entry.network.__name__),
                kwargs=entry.arguments(loaded.spec)),
            pytorch_version=pytorch),
        torchscript=bio.TorchscriptWeightsDescr(
            source=folder / "weights_torchscript.pt", pytorch_version=pytorch, parent="pytorch_state_dict"),
    )  # fmt: skip
    text, doi = CITATIONS[entry.network.__name__]
    recipe = {key: value for key, value in loaded.to_payload().items() if key != "state_dict"}
    return bio.ModelDescr(
        name=_model_name(loaded),
        description=f"{loaded.spec.name} segmentation of {', '.join(loaded.class_names) or 'classes'} "
        f"trained with napari-unetseg ({loaded.step} steps)",
        authors=[bio.Author(name=name) for name in (authors or ("napari-unetseg user",))],
        cite=[bio.CiteEntry(text=text, doi=bio.Doi(doi))],
        license=bio.LicenseId("CC-BY-4.0"),
        documentation=bio.FileDescr(source=folder / "README.md"),
        covers=[bio.FileDescr(source=folder / "cover.png")],
        tags=["segmentation", "napari-unetseg", loaded.spec.name, f"{len(spatial)}d"],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config={CONFIG_KEY: json.loads(json.dumps(recipe, default=_plain))},
    )


def _recipe_notes(loaded: LoadedModel) -> str:
    """The card's words on the steps of the recipe that bioimage.io's preprocessing cannot
    express: the normalisation's floor, and the zoom of a model that learnt large objects."""
    zoom = ""
    if loaded.object_zoom != 1.0:
        zoom = (
            f"\nThis network learnt its objects at {loaded.object_zoom:.3g}x: napari-unetseg zooms every\n"
            "image so before it and the scores back after it; other bioimage.io tools do not, and\n"
            "must be given the image zoomed so."
        )
    share = loaded.normalization.min_range
    if not share:
        return zoom
    return zoom + (
        f"\nnapari-unetseg also keeps the high value at least {share:g} of the way to the image's\n"
        "brightest pixels (99.99th percentile), so that the noise of a nearly empty image (a few\n"
        "objects on under 1 % of it) is not stretched to full range; other bioimage.io tools do\n"
        "not, and may find objects in the noise of such images."
    )


def _plain(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in the package's config")


def _identifier(name: str) -> str:
    """A bioimage.io identifier for a class name (letters, digits and underscores)."""
    from bioimageio.spec.model import v0_5 as bio

    cleaned = "".join(c if c.isalnum() else "_" for c in name.strip()).strip("_") or "class"
    return bio.Identifier(cleaned if not cleaned[0].isdigit() else f"c{cleaned}")


def _model_name(loaded: LoadedModel) -> str:
    names = "-".join(loaded.class_names) if loaded.class_names else f"{len(loaded.class_values)} classes"
    return f"napari-unetseg {loaded.spec.name} {names}"[:128]


def _write_cover(path: Path, image: np.ndarray, labels: np.ndarray) -> None:
    """The cover: the test image (first channel; the middle slice of a volume) beside its labels."""
    import imageio.v3 as iio

    plane = image[0] if image.ndim == 3 else image[0, image.shape[1] // 2]
    labels = labels if labels.ndim == 2 else labels[labels.shape[0] // 2]
    low, high = np.percentile(plane, (1, 99.8))
    grey = np.clip((plane - low) / max(high - low, 1e-6), 0, 1)
    palette = np.array([[0, 0, 0], [230, 80, 60], [60, 160, 230], [90, 200, 90], [230, 200, 60]], np.float32)
    colours = palette[1:][labels % (len(palette) - 1)] if labels.max() else palette[labels]
    overlay = np.where(
        labels[..., None] > 0, 0.5 * grey[..., None] * 255 + 0.5 * colours, grey[..., None] * 255
    )
    rgb = np.concatenate([np.repeat(grey[..., None] * 255, 3, axis=2), overlay], axis=1)
    iio.imwrite(path, rgb.astype(np.uint8))


def _model_card(loaded: LoadedModel, source: str, spatial: list[str]) -> str:
    """README.md of the package, from the model file's metadata."""
    classes = "\n".join(f"| {v} | {loaded.name_of(v) or ''} |" for v in loaded.class_values)
    config = loaded.train_config
    history = loaded.history[-1] if loaded.history else {}
    scores = ", ".join(f"{k} {v:.3f}" for k, v in history.items() if k.startswith("val_dice") and v == v)
    correction = " after a class-prior correction" if loaded.logit_bias else ""
    return f"""# {_model_name(loaded)}

A {loaded.spec.name} ({len(spatial)}D) trained with napari-unetseg {__version__} (exported from
{source}): {loaded.step} steps, {loaded.label_mode} labels, patch size
{config.get("patch_size", "?")}, batch {config.get("batch_size", "?")}, seed {config.get("seed", "?")}.

## Input
`raw`: (batch, channel, {", ".join(spatial)}), {loaded.spec.in_channels} channel(s), any intensity
range: each channel of each image is scaled so that its {loaded.normalization.low:g}th
percentile maps to 0 and its {loaded.normalization.high:g}th to 1 (`scale_range`).{_recipe_notes(loaded)}

## Output
`probabilities`: one channel per class (softmax{correction}).
The labels are the most probable class; napari-unetseg numbers them:

| label value | class |
|---|---|
{classes}

## Validation
{scores or "no validation slices were held out during training"} (on held-out labelled pixels).

## Use
In napari-unetseg: `unetseg predict --model THIS.zip ...`, `unetseg train --init THIS.zip ...`, or
the Predict dock. In Python: `bioimageio.core.predict(model="THIS.zip", inputs=image)`. The
package holds `pytorch_state_dict` weights (with the network's source) and `torchscript` weights.
"""
