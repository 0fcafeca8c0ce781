"""Starter models shipped inside the package: networks already trained on many images of a
kind, to fine-tune from rather than train from random weights.

Each starter is a model file in ``napari_unetseg/starters/`` (half precision: it loads as
any model file, with ``weights_only``) beside its model card (``<name>.md``: data, licence,
citation, recipe, scores). ``starter:NAME`` names one wherever a model file is asked for
(``unetseg train --init starter:nuclei``, ``unetseg predict --model starter:nuclei``, the
Train dock's "Start from"). ``scripts/train_starters.py`` trains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_unetseg.core.errors import UserInputError

FOLDER = Path(__file__).resolve().parents[1] / "starters"
PREFIX = "starter:"


@dataclass(frozen=True)
class Starter:
    """A shipped starter: its name, one-line description (from its card), model file and card."""

    name: str
    description: str
    path: Path
    card: Path


def available() -> dict[str, Starter]:
    """The starters in the package, by name."""
    found = {}
    for card in sorted(FOLDER.glob("*.md")):
        model = card.with_suffix(".pt")
        if model.is_file():
            lines = [line.strip() for line in card.read_text(encoding="utf-8").splitlines()]
            description = next((line for line in lines if line and not line.startswith("#")), "")
            found[card.stem] = Starter(card.stem, description, model, card)
    return found


def is_starter(text: str | Path) -> bool:
    """Whether ``text`` names a starter (``starter:NAME``)."""
    return str(text).startswith(PREFIX)


def resolve(text: str | Path) -> Path:
    """The model file ``starter:NAME`` names (other paths are returned as they are)."""
    if not is_starter(text):
        return Path(text)
    name = str(text)[len(PREFIX) :]
    starters = available()
    if name not in starters:
        known = ", ".join(f"{PREFIX}{n}" for n in starters) or "none are installed"
        raise UserInputError(f"unknown starter {name!r}; the starters are: {known}")
    return starters[name].path
