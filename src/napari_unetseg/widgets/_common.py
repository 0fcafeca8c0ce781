"""Pieces shared by the docks: layer pickers and the per-viewer session."""

from __future__ import annotations

import weakref

from magicgui.widgets import ComboBox, Container, Label, Select
from napari.layers import Image, Labels
from psygnal import Signal
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


class Session:
    """State shared by the docks of one viewer: the model trained last."""

    model_changed = Signal(object)

    def __init__(self) -> None:
        self.model = None  # LoadedModel

    def set_model(self, loaded) -> None:
        self.model = loaded
        self.model_changed.emit(loaded)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    """The :class:`Session` of ``viewer`` (created on first use)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]


STATUS_LINES = 4  # a dock's status line shows messages of up to this many lines in full


def status_label(value: str = "") -> Label:
    """A dock's status line: wraps, and always has room for :data:`STATUS_LINES` lines."""
    return wrapping_label(value, lines=STATUS_LINES)


def wrapping_label(value: str = "", lines: int = 0) -> Label:
    """A label that wraps to the dock's width, long paths included (it never widens the
    dock); ``lines``: the lines of text it always has room for (a status line: a message
    of that length is never cut, whatever the layout makes of wrapped text)."""
    label = _PathLabel(value=value)
    label.native.setWordWrap(True)
    if lines:
        label.native.setMinimumHeight(lines * label.native.fontMetrics().lineSpacing() + 4)
    return label


class _PathLabel(Label):
    """Shows ``value`` with a break opportunity after every ``/``, so a long path wraps
    instead of widening the dock."""

    @property
    def value(self) -> str:
        return super().value.replace("\u200b", "")

    @value.setter
    def value(self, text: str) -> None:
        Label.value.fset(self, str(text).replace("/", "/\u200b"))


def _choices(viewer, kind):
    def get(_widget=None):
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]

    return get


def image_combo(viewer, label: str = "Image") -> ComboBox:
    return ComboBox(label=label, choices=_choices(viewer, Image), nullable=False)


def labels_combo(viewer, label: str = "Labels", nullable: bool = False) -> ComboBox:
    return ComboBox(label=label, choices=_choices(viewer, Labels), nullable=nullable)


def image_select(viewer, label: str = "Image") -> Select:
    """Multi-selection of Image layers (several = channels, or several images to predict)."""
    select = Select(label=label, choices=_choices(viewer, Image), allow_multiple=True)
    select.native.setMaximumHeight(72)
    return select


class LayerDock(Container):
    """A dock whose layer pickers follow the viewer's layer list.

    ``controls`` maps the engine's option keys (``"steps"``, ``"patch_size"``, ``"out"``,
    ...; see :mod:`napari_unetseg.core.errors`) to the dock's widgets: error messages
    name those options by the widgets' labels (:attr:`option_names`).
    """

    def __init__(self, viewer, **kwargs) -> None:
        super().__init__(**kwargs)
        self._viewer = viewer
        self.controls: dict = {}
        viewer.layers.events.inserted.connect(self._refresh_choices)
        viewer.layers.events.removed.connect(self._refresh_choices)

    @property
    def option_names(self) -> dict[str, str]:
        """Option key -> how this dock names it in messages: its control's label, quoted."""
        names = {key: getattr(widget, "text", None) or widget.label for key, widget in self.controls.items()}
        return {key: f"'{name}'" for key, name in names.items()}

    def _ask_save_path(self, title: str, name: str, file_filter: str) -> str:
        """A save dialog (it asks before replacing an existing file); ``""`` when cancelled."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, title, name, file_filter)
        return path

    def _add_folded(self, title: str, section: Container, position: int) -> None:
        """``section`` under a folded ``title`` (click to open) at ``position`` in the dock."""
        from superqt import QCollapsible

        folded = QCollapsible(title)
        folded.addWidget(section.native)
        folded.collapse(animate=False)
        self.native.layout().insertWidget(position, folded)
        self.folded = folded

    def _end_layout(self) -> None:
        """Put the dock's widgets in a scroll area (so the dock fits a laptop screen and
        scrolls instead of stretching the window), packed at its top."""
        outer = self.native.layout()
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(outer.contentsMargins())
        column.setSpacing(outer.spacing())
        while outer.count():
            item = outer.takeAt(0)
            if item.widget() is not None:
                column.addWidget(item.widget())
            else:
                column.addItem(item)
        column.addStretch(1)
        scroll = _DockScroll(inner)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.scroll_area = scroll

    def _refresh_choices(self, event=None) -> None:
        self.reset_choices()
        for widget in self:
            if isinstance(widget, Select) and not widget.value and widget.choices:
                widget.value = [widget.choices[-1]]


class _DockScroll(QScrollArea):
    """The dock's scroll area: asks for its content's full height (Qt's own hint stops at a
    few hundred pixels), so a short dock stays short and a long one gets the room there is,
    and is always as wide as its content needs, so no control is cut at the side."""

    def __init__(self, inner: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(inner)
        inner.installEventFilter(self)
        self._fit_width()

    def _fit_width(self) -> None:
        bar = self.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(self.widget().minimumSizeHint().width() + bar)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.widget() and event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Show):
            self._fit_width()
        return super().eventFilter(watched, event)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = self.widget().sizeHint()
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())
