"""Training history files: ``history.csv`` and ``history.json`` in the run folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from napari_unetseg.core.io import write_bytes_atomic


def write_history(rows: list[dict], run_dir: Path) -> None:
    """Write the per-epoch rows as CSV and JSON (atomically)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(run_dir / "history.csv", text.getvalue().encode())
    write_bytes_atomic(run_dir / "history.json", json.dumps(rows, indent=2).encode())
