"""A training run's folder: everything written atomically, every epoch.

``model.pt`` (everything needed to predict), ``resume.pt`` (optimizer, scheduler and
random states, step, history), ``config.json`` (the model and training configs, class
values, and the record of the tries) and ``history.csv`` / ``history.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_unetseg.core.checkpoint import (
    LoadedModel,
    load_model,
    load_torch_safely,
    save_model,
    save_torch_atomic,
)
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.history import write_history
from napari_unetseg.core.io import write_bytes_atomic
from napari_unetseg.core.parallel import is_main

RESUME_FORMAT = "napari-unetseg-resume"


class RunFolder:
    """The files of one run in ``path`` (created on the first write).

    In a run on several processes (:mod:`~napari_unetseg.core.parallel`) only rank 0
    writes; the other ranks read it (to resume) and their writes do nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.writes = is_main()

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    def check_new(self) -> None:
        """Refuse to start a new run over one that is already here."""
        if self.model_path.exists():
            raise UserInputError(
                f"{self.path} already holds a model",
                ("resume it", "resume"),
                ("choose another run folder", "out"),
                ("overwrite it", "overwrite"),
            )

    def read_record(self) -> dict[str, Any]:
        """``config.json`` as written by :meth:`write_record` (of any earlier version)."""
        path = self.path / "config.json"
        if not path.is_file():
            raise UserInputError(f"{self.path} is not a run folder (no config.json): cannot resume it")
        return json.loads(path.read_text())

    def write_record(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path / "config.json", json.dumps(record, indent=2).encode())

    def load(self) -> tuple[LoadedModel, dict[str, Any]]:
        """The run's model and its resume state, to continue it."""
        return load_model(self.model_path), load_torch_safely(self.path / "resume.pt")

    def save(self, loaded: LoadedModel, resume_state: dict[str, Any]) -> Path:
        """Write the model file, the resume state and the history; the model file's path."""
        if not self.writes:
            return self.model_path
        path = save_model(loaded, self.model_path)
        save_torch_atomic({"format": RESUME_FORMAT, **resume_state}, self.path / "resume.pt")
        write_history(loaded.history, self.path)
        return path
