"""What the classes are called: names aligned with a model's class values.

The Annotate dock names the classes of its layer (1, 2, ... in the order named), ``unetseg
train --class-names`` names them in the order of the label values; the model file keeps
the names, and prediction layers, label TIFFs and evaluation tables carry them on. Label
images of a model's classes use the smallest unsigned dtype that holds its values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_unetseg.core.errors import UserInputError


def display_name(names: Mapping[int, str], value: int) -> str:
    """What to call class ``value``: its name in ``names`` (value -> name), or ``"class {value}"``."""
    return names.get(value) or f"class {value}"


def name_classes(
    values: Sequence[int],
    names: Sequence[str] | Mapping[int, str] | None,
    known: Mapping[int, str] | None = None,
) -> tuple[str, ...]:
    """Class names aligned with ``values``: from ``names`` (one per class, in the order of
    the values; or value -> name), else from ``known`` (a base model's), ``""`` where unnamed."""
    if names is None or isinstance(names, Mapping):
        given = {**(known or {}), **(names or {})}
        out = tuple(str(given.get(int(v), "")) for v in values)
        return out if any(out) else ()
    names = [str(name).strip() for name in names]
    if len(names) != len(values):
        listed = ", ".join(str(v) for v in values)
        raise UserInputError(
            f"{len(names)} class names for {len(values)} classes (label values {listed})",
            ("give one name per class, in the order of the label values", "class_names"),
        )
    return tuple(names)


def parse_names(text: str | None) -> list[str] | None:
    """``"background, nucleus"`` -> ``["background", "nucleus"]`` (``None`` stays ``None``)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise UserInputError(
            f"class names {text!r} must be distinct and separated by commas",
            ("give them as in 'background,nucleus'", "class_names"),
        )
    return names


def background_value(values: Sequence[int], names: Mapping[int, str]) -> int | None:
    """The background class: the one named "background", or, when the classes have no names,
    the lowest value (0 of dense labels, 1 = the first class named in the Annotate dock);
    ``None`` when the classes are named and none is the background."""
    named = [v for v in values if str(names.get(v, "")).strip().lower() == "background"]
    if named:
        return named[0]
    return min(values) if values and not any(names.values()) else None


def labels_dtype(class_values: tuple[int, ...]) -> np.dtype:
    """The smallest unsigned dtype holding every class value."""
    top = max(class_values)
    return np.dtype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32)
