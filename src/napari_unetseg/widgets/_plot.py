"""A small line plot drawn with QPainter: cheap enough to redraw on every training step."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 46, 10, 22, 20


class CurvePlot(QWidget):
    """Named series of (x, y) points on shared axes; the y range follows the data.

    Parameters
    ----------
    title
        Drawn at the top left, followed by the legend.
    y_range
        Fixed ``(low, high)`` y range, or ``None`` to fit the data.
    empty_text
        What the plot says while it has no point (instead of empty axes).
    """

    def __init__(
        self,
        title: str = "",
        y_range: tuple[float, float] | None = None,
        parent=None,
        empty_text: str = "no data yet",
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.empty_text = empty_text
        self.y_range = y_range
        self.series: dict[str, tuple[list[float], list[float], str]] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def add_series(self, name: str, color: str) -> None:
        self.series[name] = ([], [], color)

    def append(self, name: str, x: float, y: float) -> None:
        if math.isfinite(y):
            self.series[name][0].append(float(x))
            self.series[name][1].append(float(y))
            self.update()

    def set_data(self, name: str, xs, ys) -> None:
        color = self.series[name][2]
        points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y)]
        self.series[name] = ([p[0] for p in points], [p[1] for p in points], color)
        self.update()

    def remove_all(self) -> None:
        """Drop every series (and its legend entry)."""
        self.series = {}
        self.update()

    def clear(self) -> None:
        for name, (_, _, color) in list(self.series.items()):
            self.series[name] = ([], [], color)
        self.update()

    def _ranges(self) -> tuple[float, float, float, float]:
        xs = [x for s in self.series.values() for x in s[0]]
        ys = [y for s in self.series.values() for y in s[1]]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if self.y_range is not None:
            y0, y1 = self.y_range
        else:
            y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
            y0 = min(y0, 0.0)
        if x1 - x0 < 1e-6:  # one point (one slice, one step): a unit-wide axis, not 0..1e-09
            x1 = x0 + 1.0
        return x0, x1, y0, max(y1, y0 + 1e-9)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        area = QRectF(
            _MARGIN_LEFT,
            _MARGIN_TOP,
            max(1, self.width() - _MARGIN_LEFT - _MARGIN_RIGHT),
            max(1, self.height() - _MARGIN_TOP - _MARGIN_BOTTOM),
        )
        x0, x1, y0, y1 = self._ranges()
        painter.setPen(QPen(text, 1))
        if not any(xs for xs, _, _ in self.series.values()):
            painter.drawText(QPointF(4, 15), self.title)
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, self.empty_text)
            painter.end()
            return
        painter.drawRect(area)
        painter.drawText(QPointF(4, area.top() + 10), f"{y1:.3g}")
        painter.drawText(QPointF(4, area.bottom()), f"{y0:.3g}")
        painter.drawText(QPointF(area.left(), self.height() - 4), f"{x0:g}")
        painter.drawText(
            QRectF(area.right() - 80, self.height() - 16, 80, 16), Qt.AlignmentFlag.AlignRight, f"{x1:g}"
        )
        painter.drawText(QPointF(4, 15), self.title)
        legend_x = 8 + painter.fontMetrics().horizontalAdvance(self.title) + 12
        for name, (xs, ys, color) in self.series.items():
            pen = QPen(QColor(color), 2)
            painter.setPen(pen)
            painter.drawLine(QPointF(legend_x, 11), QPointF(legend_x + 14, 11))
            painter.setPen(QPen(text, 1))
            painter.drawText(QPointF(legend_x + 18, 15), name)
            legend_x += 30 + painter.fontMetrics().horizontalAdvance(name)
            if not xs:
                continue
            points = QPolygonF(
                [
                    QPointF(
                        area.left() + (x - x0) / (x1 - x0) * area.width(),
                        area.bottom() - (min(max(y, y0), y1) - y0) / (y1 - y0) * area.height(),
                    )
                    for x, y in zip(xs, ys)
                ]
            )
            painter.setPen(pen)
            if len(xs) == 1:
                painter.drawEllipse(points[0], 2.5, 2.5)
            else:
                painter.drawPolyline(points)
        painter.end()
