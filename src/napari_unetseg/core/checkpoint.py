"""Model files: everything needed to predict, loadable without running code.

A model file is a ``torch.save`` of plain containers (dicts, lists, strings, numbers)
and tensors, read back with ``torch.load(..., weights_only=True)``, which refuses any
pickled Python object: a model file from a stranger cannot execute code.

Contents: ``format``, ``format_version``, ``spec`` (the ModelSpec's network fields),
``normalization`` (its percentiles, kept apart as in earlier versions), ``normalization_scope``
(absent from files of 0.1, which normalised whole stacks), ``normalization_min_range``
(absent from files before it, which scaled without it), ``class_values``, ``class_names``
(one per class value, ``""`` where unnamed), ``label_mode``, ``train_config``, ``logit_bias``, ``history``,
``step``, ``object_size`` (object models: the median size of the objects trained on; absent
from files before it, read as 0: unknown), ``object_depths`` (2D object models: the 10th,
50th and 90th percentiles of the trained objects' largest depths,
:mod:`~napari_unetseg.core.object_scale`; absent before it: unknown), ``object_zoom`` (2D
object models: the zoom its network saw the images at, below 1 for large objects; absent
before it: 1) and ``state_dict``.
Resume state (optimizer, scheduler, RNG) lives in a separate ``resume.pt`` in the run
folder so that shared model files stay small.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_unetseg.core.class_names import display_name
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import atomic_write
from napari_unetseg.core.models import build_model
from napari_unetseg.core.models.blocks import SegmentationModel
from napari_unetseg.core.normalization import Normalization

FORMAT = "napari-unetseg-model"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A network with the recipe that produced it (its ``spec`` holds the normalisation)."""

    model: SegmentationModel
    spec: ModelSpec
    class_values: tuple[int, ...]
    label_mode: str = "sparse"
    train_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    logit_bias: tuple[float, ...] = ()
    class_names: tuple[str, ...] = ()  # one per class value; "" (or none at all): unnamed
    object_size: float = 0.0  # object models: median pixels (voxels) of the objects trained on
    object_depths: tuple[float, ...] = ()  # 2D object models: the sizes learnt (object_scale)
    object_zoom: float = 1.0  # 2D object models: the images' zoom the network learnt at (object_scale)

    def name_of(self, value: int) -> str:
        """What to call class ``value``: its name, or ``"class {value}"``."""
        return display_name(dict(zip(self.class_values, self.class_names)), value)

    @property
    def normalization(self) -> Normalization:
        """How input images are normalised (``spec.normalization``)."""
        return self.spec.normalization

    def adjust(self, scores: np.ndarray) -> np.ndarray:
        """Add the class-prior correction (:mod:`~napari_unetseg.core.priors`) to
        ``(K, ...)`` network scores; unchanged when the model has none."""
        if not self.logit_bias:
            return scores
        bias = np.asarray(self.logit_bias, dtype=scores.dtype)
        return scores + bias.reshape(-1, *([1] * (scores.ndim - 1)))

    def to_payload(self) -> dict[str, Any]:
        """The plain-data dict that goes into a model file."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spec": self.spec.network_dict(),
            "class_values": list(self.class_values),
            "label_mode": self.label_mode,
            "normalization": self.normalization.percentile_dict(),
            "normalization_scope": self.normalization.scope,
            "normalization_min_range": self.normalization.min_range,
            "class_names": list(self.class_names),
            "train_config": dict(self.train_config),
            "history": list(self.history),
            "step": int(self.step),
            "logit_bias": [float(b) for b in self.logit_bias],
            "object_size": float(self.object_size),
            "object_depths": [float(d) for d in self.object_depths],
            "object_zoom": float(self.object_zoom),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }


def save_torch_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file, fsync, rename: never a half-written file."""
    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def save_model(loaded: LoadedModel, path: str | Path) -> Path:
    """Write a model file atomically."""
    return save_torch_atomic(loaded.to_payload(), path)


def model_file(path: str | Path) -> Path:
    """The model file a path names: itself, a run folder's ``model.pt``, or a shipped
    starter's (``starter:NAME``, :mod:`~napari_unetseg.core.starters`)."""
    from napari_unetseg.core.starters import resolve

    path = resolve(path)
    if path.is_dir():
        candidate = path / "model.pt"
        if not candidate.is_file():
            raise UserInputError(f"{path} is a folder without a model.pt: give a model file")
        return candidate
    return path


def load_torch_safely(path: str | Path) -> dict[str, Any]:
    """Load a torch file with ``weights_only=True``; clear errors for bad files."""
    path = model_file(path)
    if not path.is_file():
        raise UserInputError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise UserInputError(f"{path} is damaged or truncated: copy or save the model file again")
        raise UserInputError(f"{path} is not a napari-unetseg model file (expected a model.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserInputError(
            f"refusing to load {path}: it holds Python objects that could run code "
            "(only plain data and tensors are accepted)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt, not a torch file
        raise UserInputError(f"{path} is not a readable model file ({type(exc).__name__})") from exc
    if not isinstance(payload, dict):
        raise UserInputError(f"{path} is not a napari-unetseg model file")
    return payload


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a model file (or a run folder's, or a bioimage.io package that napari-unetseg
    exported: :mod:`~napari_unetseg.core.bioimageio`) into a :class:`LoadedModel` on
    ``device`` in eval mode."""
    from napari_unetseg.core.bioimageio import is_package, load_package

    if is_package(path):
        return load_package(path, device)
    return model_from_payload(load_torch_safely(path), path, device)


def model_from_payload(payload: dict, path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """A :class:`LoadedModel` from a model file's contents (:meth:`LoadedModel.to_payload`);
    ``path`` names it in the error messages."""
    if payload.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a napari-unetseg model file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserInputError(
            f"{path} has model format version {version}; this napari-unetseg reads up to "
            f"{FORMAT_VERSION}: upgrade napari-unetseg"
        )
    try:
        scope = payload.get("normalization_scope", "stack")  # 0.1 normalised whole stacks
        min_range = payload.get("normalization_min_range", 0.0)  # files before it scale without it
        normalization = Normalization.from_dict(
            {**payload["normalization"], "scope": scope, "min_range": min_range}
        )
        spec = ModelSpec.from_dict(payload["spec"]).replace(normalization=normalization)
        model = build_model(spec)
        model.load_state_dict(payload["state_dict"])
        loaded = LoadedModel(
            model=model.to(device).eval(),
            spec=spec,
            class_values=tuple(int(v) for v in payload["class_values"]),
            label_mode=str(payload.get("label_mode", "sparse")),
            train_config=dict(payload.get("train_config", {})),
            history=list(payload.get("history", [])),
            step=int(payload.get("step", 0)),
            logit_bias=tuple(float(b) for b in payload.get("logit_bias", ())),
            class_names=tuple(str(name) for name in payload.get("class_names", ())),
            object_size=float(payload.get("object_size", 0.0)),
            object_depths=tuple(float(d) for d in payload.get("object_depths", ())),
            object_zoom=float(payload.get("object_zoom", 1.0)),
        )
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UserInputError(f"{path} is a damaged model file: {exc}") from exc
    n_bias = len(loaded.logit_bias)
    n_names = len(loaded.class_names)
    if len(loaded.class_values) != spec.num_classes or n_bias not in (0, spec.num_classes):
        raise UserInputError(f"{path} is a damaged model file: class values do not match the head")
    if n_names not in (0, spec.num_classes):
        raise UserInputError(f"{path} is a damaged model file: class names do not match the classes")
    if not 0 < loaded.object_zoom <= 1:
        raise UserInputError(f"{path} is a damaged model file: its object zoom is {loaded.object_zoom}")
    return loaded


def load_matching_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Copy the weights whose names and shapes match; return the names left as initialised.

    Used to fine-tune from a model file with a different number of classes or input
    channels: everything but the mismatching layers (the heads) is reused.
    """
    own = model.state_dict()
    skipped = [k for k, v in own.items() if k not in state_dict or state_dict[k].shape != v.shape]
    model.load_state_dict(
        {k: v for k, v in state_dict.items() if k in own and k not in skipped}, strict=False
    )
    return skipped


def pruned(loaded: LoadedModel, head: int) -> LoadedModel:
    """A UNet++ with deep supervision cut down to prediction head ``L{head}``.

    The returned model holds only the nodes ``X(i, j)`` with ``i + j <= head`` (the
    weights are shared with ``loaded``, the rest is dropped) and its spec records the
    head, so a model file saved from it predicts from that head and is smaller.
    """
    spec = loaded.spec
    if spec.name not in ("unetplusplus", "unetplusplus3d"):
        raise UserInputError(f"only UNet++ models have heads to prune to; this is a {spec.name}")
    current = spec.head or spec.depth
    if not spec.deep_supervision and head != current:
        raise UserInputError("this UNet++ was trained without deep supervision: only its last head exists")
    if not 1 <= head <= current:
        already = " (it is already pruned)" if current < spec.depth else ""
        raise UserInputError(f"the head must be between 1 and {current}{already}, got {head}")
    new_spec = spec.replace(head=head)
    device = next(loaded.model.parameters()).device
    model = build_model(new_spec)
    model.load_state_dict({k: v for k, v in loaded.model.state_dict().items() if k in model.state_dict()})
    return dataclasses.replace(loaded, model=model.to(device).eval(), spec=new_spec)
