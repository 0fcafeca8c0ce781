"""Running engine generators in a worker thread, and telling the user what happened.

The engine's long jobs are generators of events. :func:`start_worker` runs one in a
napari thread worker; events arrive in the main thread through ``on_event``, and the
outcome through ``on_done``. Errors never reach napari's traceback dialog: a
:class:`UserInputError` becomes a warning notification with its one-line message,
worded with the dock's control names (``names``: option key -> label), any other
exception an error notification (its traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning

from napari_unetseg.core.errors import UserInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a guarded job ended with: its return ``value`` or the ``error`` it raised."""

    value: Any = None
    error: Exception | None = None


def guarded(job: Callable[[], Generator]) -> Generator[Any, None, Outcome]:
    """Run ``job()`` (a generator factory) and turn any exception into an :class:`Outcome`."""
    try:
        value = yield from job()
    except UserInputError as exc:
        return Outcome(error=exc)
    except Exception as exc:  # noqa: BLE001 - reported to the user, traceback logged
        log.exception("napari-unetseg job failed")
        return Outcome(error=exc)
    return Outcome(value=value)


def failure(outcome: Outcome, what: str, names: Mapping[str, str]) -> str | None:
    """Notify the user of a failed outcome and return the message (for the dock's status
    line); ``None`` on success."""
    return None if outcome.error is None else notify(outcome.error, what, names)


def notify(error: Exception, what: str, names: Mapping[str, str]) -> str:
    """Show ``error`` as a notification headed ``what`` (bad input: a warning in the dock's
    words; a bug: an error); returns the message without the heading."""
    if isinstance(error, UserInputError):
        message = error.worded(names)
        show_warning(f"{what}: {message}")
    else:
        message = f"unexpected error, please report it: {type(error).__name__}: {error}"
        show_error(f"{what} failed: {message}")
    return message


def warn(text: str) -> None:
    """A warning notification (looked up when called, so tests can collect them)."""
    show_warning(text)


def user_call(func: Callable[[], Any], what: str, names: Mapping[str, str], status=None) -> Any:
    """Call ``func`` in the main thread; a :class:`UserInputError` becomes a notification
    (and the text of the ``status`` label, when given).

    Returns the result, or ``None`` when the input was refused.
    """
    try:
        return func()
    except UserInputError as exc:
        message = notify(exc, what, names)
        if status is not None:
            status.value = message
        return None


def start_worker(
    job: Callable[[], Generator],
    on_event: Callable[[Any], None],
    on_done: Callable[[Outcome], None],
    on_aborted: Callable[[], None] | None = None,
):
    """Start ``job`` in a thread worker and return the worker (``worker.quit()`` aborts it)."""
    worker = create_worker(guarded, job, _start_thread=False)
    worker.yielded.connect(on_event)
    worker.returned.connect(on_done)
    if on_aborted is not None:
        worker.aborted.connect(on_aborted)
    worker.start()
    return worker


def as_job(func: Callable[[], Any]) -> Callable[[], Generator]:
    """Wrap a plain function as a generator factory (no events) for :func:`start_worker`."""

    def job():
        return func()
        yield  # unreachable: its presence makes ``job`` a generator function

    return job


__all__ = [
    "Outcome",
    "as_job",
    "failure",
    "guarded",
    "notify",
    "show_info",
    "warn",
    "start_worker",
    "user_call",
]
