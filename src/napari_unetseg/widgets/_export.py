"""Exporting a dock's model as a bioimage.io package, in a worker thread (it takes seconds:
the network is traced and run on the test input)."""

from __future__ import annotations

from pathlib import Path

from napari_unetseg.widgets._run import as_job, failure, start_worker


def export_in_worker(loaded, path: str | Path, overwrite: bool, dock, status, on_finished=None):
    """Write ``loaded`` to ``path`` (:func:`~napari_unetseg.core.bioimageio.export_package`)
    in a thread worker; ``status`` tells the outcome (a refusal is also a notification in the
    dock's words). ``dock.worker`` holds the worker until it ends; ``on_finished()`` runs then."""
    from napari_unetseg.core.bioimageio import export_package

    status.value = f"Exporting for bioimage.io to {path} ..."

    def done(outcome) -> None:
        dock.worker = None
        message = failure(outcome, "Export for bioimage.io", dock.option_names)
        status.value = message or f"Exported for bioimage.io: {outcome.value}"
        if on_finished is not None:
            on_finished()

    return start_worker(
        as_job(lambda: export_package(loaded, path, overwrite=overwrite)), lambda _: None, done
    )
