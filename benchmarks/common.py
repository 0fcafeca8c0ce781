"""Helpers shared by the benchmark scripts: data location, hardware line, timing."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

DATA = Path(os.environ.get("UNETSEG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def hardware() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"
    )


def save_results(results: dict, name: str) -> Path:
    """Write ``benchmarks/results/<name>.json`` (ignored by git) and return the path."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path
