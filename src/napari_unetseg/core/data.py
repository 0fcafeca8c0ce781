"""Training data: label encoding and patch sampling on the training device.

Label encoding
    ``sparse``: value 0 means "not painted" and is ignored; the classes are the painted
    values. ``dense``: 0 is a class like any other. Internally class ``k`` is the
    ``k``-th entry of ``class_values`` and ignored pixels are ``-1``; predictions are
    mapped back through ``class_values``, so they come out in the annotation numbering.

Patch sampling
    Most patches are centred (with jitter) on a labelled pixel of a class drawn
    uniformly, so thin strokes of a rare class are seen as often as large areas of a
    common one; the rest are centred anywhere in a labelled slice for context. Slices are
    mirror-padded once and kept on the device; a batch is a handful of tensor slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import check_pairs_match

IGNORE = -1
_MAX_COORDS_PER_CLASS = 2_000_000


MIN_IMAGE_SIZE = 8


def check_image_size(stack: np.ndarray, what: str = "the image") -> None:
    """Refuse images too small for the networks (``(..., Y, X)``)."""
    h, w = stack.shape[-2:]
    if min(h, w) < MIN_IMAGE_SIZE:
        raise UserInputError(
            f"{what} is {h}x{w} pixels, too small for the networks "
            f"(at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE})",
            ("check the file and its axes", "axes"),
        )


def check_label_array(labels: np.ndarray, name: str = "labels") -> None:
    """Labels must be integers (or floats holding whole numbers) and non-negative."""
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise UserInputError(
                f"{name} hold fractional or non-finite values: label images must be integers"
            )
    elif labels.dtype.kind not in "iub":
        raise UserInputError(f"{name} have dtype {labels.dtype}: label images must be integers")
    if labels.size and labels.min() < 0:
        raise UserInputError(f"{name} hold negative values: label values must be >= 0")


def find_class_values(
    label_stacks: Sequence[np.ndarray], mode: str, known: Sequence[int] = ()
) -> tuple[int, ...]:
    """The sorted class values of the annotations (plus ``known`` ones from a model)."""
    values: set[int] = {int(v) for v in known}
    painted = 0
    for labels in label_stacks:
        check_label_array(labels)
        uniques, counts = np.unique(labels, return_counts=True)
        for value, count in zip(uniques.tolist(), counts.tolist()):
            if mode == "sparse" and value == 0:
                continue
            values.add(int(value))
            painted += count
    if painted == 0:
        raise UserInputError("no painted pixels: paint a few strokes of each class (label 0 means unpainted)")
    if len(values) < 2:
        only = next(iter(values))
        hint = " (in sparse mode 0 is 'unpainted'; use dense mode if 0 is background)"
        raise UserInputError(
            f"only one class ({only}) is labelled: paint at least two classes, e.g. "
            f"background and object{hint if mode == 'sparse' else ''}"
        )
    return tuple(sorted(values))


DENSE_ZERO_WARNING = 0.9  # dense labels whose painted slices are this much 0 look like strokes


def label_mode_warning(label_stacks: Sequence[np.ndarray], mode: str) -> str | None:
    """A warning when dense mode meets what looks like strokes: on the slices with any
    non-zero label, 0 (a class in dense mode) covers nearly everything, so the network
    would learn "0" for the unpainted pixels."""
    if mode != "dense":
        return None
    zeros = total = 0
    for labels in label_stacks:
        for plane in np.asarray(labels).reshape((-1, *labels.shape[-2:])):
            if plane.any():
                zeros += int((plane == 0).sum())
                total += plane.size
    if total and zeros / total >= DENSE_ZERO_WARNING:
        return (
            f"the labels are dense (0 is a class) but 0 covers {100 * zeros / total:.0f} % of the "
            "labelled slices: if 0 means unpainted (strokes), train with sparse labels"
        )
    return None


def encode_labels(labels: np.ndarray, class_values: Sequence[int], mode: str) -> np.ndarray:
    """Map label values to class indices ``0..K-1``; unpainted/unknown -> ``-1``."""
    lut_size = max(int(labels.max(initial=0)), max(class_values)) + 1
    lut = np.full(lut_size, IGNORE, dtype=np.int64)
    for index, value in enumerate(class_values):
        lut[value] = index
    if mode == "sparse":
        lut[0] = IGNORE
    return lut[labels.astype(np.int64)]


class PatchSampler:
    """Draw augmented-ready training batches from labelled slices (or volumes), on ``device``.

    Parameters
    ----------
    images : list of (C, Y, X) or (C, Z, Y, X) float32 arrays
        Normalised slices (2D models) or volumes (3D models).
    targets : list of (Y, X) or (Z, Y, X) int64 arrays
        Encoded labels (``-1`` = ignore).
    patch_size : int or tuple
        Side of the square patches, or one side per spatial axis.
    num_classes : int
        Number of classes ``K``.
    labelled_fraction : float
        Share of patches centred on a labelled pixel (class-balanced).
    device : torch.device
    generator : torch.Generator
        CPU generator: all random choices come from it (reproducible).
    levels : list of uint8 arrays shaped as ``targets``, optional
        A weight level per pixel (object runs:
        :func:`~napari_unetseg.core.contacts.contact_levels`), packed into the sampled
        targets as ``class + K * level`` (:func:`~napari_unetseg.core.losses.split_target`)
        so that every augmentation moves it with the classes.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list[np.ndarray],
        patch_size: int | tuple[int, ...],
        num_classes: int,
        labelled_fraction: float,
        device: torch.device,
        generator: torch.Generator,
        levels: list[np.ndarray] | None = None,
    ) -> None:
        if not images:
            raise UserInputError("no labelled slices to train on")
        dims = targets[0].ndim
        self.patch = patch_size if isinstance(patch_size, tuple) else (patch_size,) * dims
        self.pad = tuple(p // 2 + p // 4 for p in self.patch)
        self.labelled_fraction = labelled_fraction
        self.generator = generator
        self.images = [self._pad(img, "reflect").to(device) for img in images]
        self.targets = [self._pad(t[None], "constant")[0].to(device) for t in targets]
        self.num_classes = num_classes
        self.levels = None
        if levels is not None:
            self.levels = [
                torch.from_numpy(np.pad(lv, [(p, p) for p in self.pad])).to(device) for lv in levels
            ]
        self.sizes = torch.tensor([t.shape for t in targets], dtype=torch.int64)
        self.class_coords = self._class_coordinates(targets, num_classes)
        self.present = [k for k, c in enumerate(self.class_coords) if len(c)]

    def _pad(self, array: np.ndarray, mode: str) -> torch.Tensor:
        width = ((0, 0), *((p, p) for p in self.pad))
        if mode == "reflect":
            return torch.from_numpy(np.pad(array, width, mode="reflect").astype(np.float32))
        return torch.from_numpy(np.pad(array, width, mode="constant", constant_values=IGNORE))

    def _class_coordinates(self, targets: list[np.ndarray], num_classes: int) -> list[torch.Tensor]:
        dims = len(self.patch)
        per_class: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        for index, target in enumerate(targets):
            coords = np.nonzero(target >= 0)
            classes = target[coords]
            for k in range(num_classes):
                sel = classes == k
                if sel.any():
                    per_class[k].append(np.stack([np.full(sel.sum(), index), *(c[sel] for c in coords)], 1))
        out = []
        for k, parts in enumerate(per_class):
            coords = np.concatenate(parts) if parts else np.zeros((0, 1 + dims), dtype=np.int64)
            if len(coords) > _MAX_COORDS_PER_CLASS:
                rng = np.random.default_rng(k)
                coords = coords[rng.choice(len(coords), _MAX_COORDS_PER_CLASS, replace=False)]
            out.append(torch.from_numpy(coords.astype(np.int64)))
        return out

    def _centres(self, batch_size: int) -> torch.Tensor:
        g = self.generator
        dims = len(self.patch)
        centres = torch.empty((batch_size, 1 + dims), dtype=torch.int64)
        labelled = torch.rand(batch_size, generator=g) < self.labelled_fraction
        for b in range(batch_size):
            if labelled[b]:
                k = self.present[int(torch.randint(len(self.present), (1,), generator=g))]
                coords = self.class_coords[k]
                centres[b] = coords[int(torch.randint(len(coords), (1,), generator=g))]
            else:
                index = int(torch.randint(len(self.images), (1,), generator=g))
                position = [int(torch.randint(n, (1,), generator=g)) for n in self.sizes[index].tolist()]
                centres[b] = torch.tensor([index, *position])
        if len(set(self.patch)) == 1:  # square/cubic patches: one draw for all axes
            p = self.patch[0]
            centres[:, 1:] += torch.randint(-p // 4, p // 4 + 1, (batch_size, dims), generator=g)
        else:
            for axis, p in enumerate(self.patch, start=1):
                centres[:, axis] += torch.randint(-p // 4, p // 4 + 1, (batch_size,), generator=g)
        return centres

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(B, C, *patch)`` of float images and ``(B, *patch)`` int64 targets
        (with their weight levels packed in, when the sampler has ``levels``)."""
        images, targets = [], []
        for index, *centre in self._centres(batch_size).tolist():
            window = []
            for c, p, pad, n in zip(centre, self.patch, self.pad, self.sizes[index].tolist()):
                start = min(max(c + pad - p // 2, 0), n + 2 * pad - p)
                window.append(slice(start, start + p))
            images.append(self.images[index][(slice(None), *window)])
            target = self.targets[index][tuple(window)]
            if self.levels is not None:
                level = self.levels[index][tuple(window)]
                target = torch.where(target >= 0, target + self.num_classes * level.long(), target)
            targets.append(target)
        return torch.stack(images), torch.stack(targets)


def class_weights(targets: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Median-frequency class weights over labelled pixels (Eigen & Fergus 2015).

    Classes with fewer labelled pixels weigh more; a class absent from the labels gets 1.
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for target in targets:
        valid = target[target >= 0]
        counts += np.bincount(valid, minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1)
    present = freq > 0
    weights = np.ones(num_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)


MIN_SLICES_FOR_VALIDATION = 4


def check_training_pairs(images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> int:
    """Refuse image and label stacks that do not pair up; the images' channel count."""
    if len(images) != len(labels) or not images:
        raise UserInputError(
            f"need one label image per image, got {len(images)} images and {len(labels)} labels"
        )
    for index, (image, label) in enumerate(zip(images, labels)):
        check_pairs_match(image, label, f"#{index + 1} " if len(images) > 1 else "")
    channels = {image.shape[1] for image in images}
    if len(channels) > 1:
        raise UserInputError(f"all training images need the same channel count, got {sorted(channels)}")
    return channels.pop()


def check_training_sizes(images: Sequence[np.ndarray], patch_size: int) -> None:
    """Refuse training images too small for the networks or for the patches."""
    for index, image in enumerate(images):
        name = f"#{index + 1} " if len(images) > 1 else ""
        check_image_size(image, f"training image {name}".strip())
        side = min(image.shape[-2:])
        if patch_size > side:
            raise UserInputError(
                f"patch size {patch_size} is larger than training image "
                f"{name}({image.shape[-2]}x{image.shape[-1]})",
                (f"use a patch size of {side} or less", "patch_size"),
            )


def training_items(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    class_values: Sequence[int],
    mode: str,
    normalization,
    volumes: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised ``(x, target)`` pairs of every labelled slice (2D models: ``(C, Y, X)``
    and ``(Y, X)``) or labelled stack (3D models: ``(C, Z, Y, X)`` and ``(Z, Y, X)``).

    Each item is normalised as prediction will normalise it (``normalization``, a
    :class:`~napari_unetseg.core.normalization.Normalization`: by default a slice from its
    own percentiles, a volume from its own); a constant image is refused.
    """
    items = []
    for number, (image, label) in enumerate(zip(images, labels), start=1):
        lo, hi = normalization.percentiles(image)
        if np.all(hi <= lo):
            raise UserInputError(
                f"training image #{number} is constant (every pixel is {lo[0]:g}), nothing to learn from",
                ("check the file and its axes", "axes"),
            )
        if volumes:
            target = encode_labels(np.asarray(label), class_values, mode)
            if (target >= 0).any():
                items.append((np.moveaxis(normalization.apply(image, lo, hi), 1, 0), target))
            continue
        read = normalization.slice_reader(image)
        for i in range(image.shape[0]):
            target = encode_labels(np.asarray(label[i]), class_values, mode)
            if (target >= 0).any():
                items.append((read(i), target))
    return items


def split_validation(items: list, fraction: float, seed: int, allowed: bool = True) -> tuple[list, list]:
    """``(train, validation)``: ``fraction`` of the items (at least one) held out when there
    are :data:`MIN_SLICES_FOR_VALIDATION` or more and ``allowed``, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    n_val = 0
    if allowed and len(items) >= MIN_SLICES_FOR_VALIDATION and fraction > 0:
        n_val = max(1, int(round(fraction * len(items))))
    held_out = set(rng.choice(len(items), n_val, replace=False).tolist()) if n_val else set()
    train = [item for index, item in enumerate(items) if index not in held_out]
    return train, [item for index, item in enumerate(items) if index in held_out]
