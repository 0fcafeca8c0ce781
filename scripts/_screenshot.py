"""What the screenshot scripts share: a window screenshot once a Train dock's run ends."""

from __future__ import annotations

from pathlib import Path


def grab_when_trained(viewer, train, out: Path, after_ms: int) -> None:
    """In ``after_ms``, then every second until ``train``'s run has finished: screenshot the
    whole window to ``out``, print the dock's status line and close the viewer."""
    from qtpy.QtCore import QTimer

    def grab() -> None:
        if train.worker is not None:
            QTimer.singleShot(1000, grab)
            return
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        print(f"{out}: {train._status.value}")
        viewer.close()

    QTimer.singleShot(after_ms, grab)
