"""What keeps the Train dock in step with the user while a run goes on (Qt, main thread).

* :class:`StrokeFollower`: the labels layer's strokes go to the running trainer once the
  brush has rested for a moment (every stroke, fill or erase restarts the wait);
* :class:`CloseWatch`: tells the dock when its main window closes or when napari takes the
  dock out of the window, so the run can stop and save before anything is torn down;
* :class:`QuietCollector`: keeps Python's full garbage collections from pausing the viewer
  while a run goes on.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject, QTimer

STROKE_DELAY_MS = 1000  # strokes reach the running training this long after the last one


class StrokeFollower:
    """Calls ``send(layer)`` :data:`STROKE_DELAY_MS` after the last paint event of the
    followed Labels layer; ``send`` returns ``False`` to be asked again a moment later
    (e.g. while the trainer is still being built)."""

    def __init__(self, send: Callable[[object], bool]) -> None:
        self._send = send
        self.layer = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(STROKE_DELAY_MS)
        self._timer.timeout.connect(self._fire)

    def follow(self, layer) -> None:
        """Follow ``layer`` (``None``: stop following)."""
        if self.layer is not None:
            self.layer.events.paint.disconnect(self._restart)
            self.layer.events.data.disconnect(self._restart)
        self._timer.stop()
        self.layer = layer
        if layer is not None:
            layer.events.paint.connect(self._restart)
            layer.events.data.connect(self._restart)

    def _restart(self, event=None) -> None:
        self._timer.start()  # restarts: the strokes go once the brush rests

    def _fire(self) -> None:
        if self.layer is not None and not self._send(self.layer):
            self._timer.start()


class _EventWatch(QObject):
    """Calls ``callback(watched)`` when a widget it watches gets an event of ``kind``."""

    def __init__(self, kind, callback) -> None:
        super().__init__()
        self._kind, self._callback = kind, callback

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == self._kind:
            self._callback(watched)
        return False


class CloseWatch:
    """Calls ``on_window_close()`` when the main window around ``dock`` (a QWidget) closes,
    and ``on_dock_closed()`` when napari takes the dock out of that window (its widget loses
    its parent) or deletes it. The window is known once the dock is docked: call
    :meth:`watch_window` when a run starts."""

    def __init__(self, dock, on_window_close: Callable[[], None], on_dock_closed: Callable[[], None]) -> None:
        self._dock = dock
        self._window = lambda: None  # weak: the dock must not keep the window (and viewer) alive
        self._on_dock_closed = on_dock_closed
        self._close = _EventWatch(QEvent.Type.Close, lambda _: on_window_close())
        self._parent = _EventWatch(QEvent.Type.ParentChange, self._parent_changed)
        dock.installEventFilter(self._parent)
        dock.destroyed.connect(lambda *_: on_dock_closed())

    def watch_window(self) -> None:
        window = self._dock.window()
        if window is not self._window():
            self._window = weakref.ref(window)
            window.installEventFilter(self._close)

    def _parent_changed(self, widget) -> None:
        if widget.parent() is None and self._window() is not None:  # docked once, now taken out
            self._on_dock_closed()


class QuietCollector:
    """While a run goes on, the objects that exist at its start (napari's, torch's: a few
    million) are left out of Python's full garbage collections (:func:`gc.freeze`).

    A full collection walks every object and holds the GIL all the while: 0.3 s in a
    viewer with a network loaded, in whichever thread allocates at the time, so the viewer
    froze every so often while it trained. Young objects are still collected as usual;
    what becomes garbage among the frozen ones waits for :meth:`end`, which puts them back
    (a layer deleted during the run, say, is freed afterwards). Runs may overlap: the
    objects go back when the last one ends.
    """

    runs = 0

    def begin(self) -> None:
        if QuietCollector.runs == 0:
            gc.freeze()
        QuietCollector.runs += 1

    def end(self) -> None:
        QuietCollector.runs = max(0, QuietCollector.runs - 1)
        if QuietCollector.runs == 0:
            gc.unfreeze()
