"""Size of the source: the largest modules, function lengths, TrainConfig's top level.

    python benchmarks/code_stats.py [--src src/napari_unetseg] [--top 6]

Function length = lines from ``def`` to the last line of the body (nested functions are
counted on their own too). Repeated code is counted by the workplace's ``duplicates``
tool (``duplicates --repo src``), not here.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import sys
from pathlib import Path

import numpy as np


def function_lengths(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.end_lineno - node.lineno + 1, f"{path.name}:{node.name}")
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src" / "napari_unetseg"))
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    src = Path(args.src)
    files = sorted(src.rglob("*.py"))
    sizes = sorted(
        ((len(f.read_text(encoding="utf-8").splitlines()), f.relative_to(src)) for f in files), reverse=True
    )
    print(f"{len(files)} modules, {sum(n for n, _ in sizes)} lines")
    print("largest modules:", ", ".join(f"{name} {n}" for n, name in sizes[: args.top]))
    lengths = [item for f in files for item in function_lengths(f)]
    values = np.array([n for n, _ in lengths])
    p90 = np.percentile(values, 90)
    print(
        f"{len(values)} functions: median {np.median(values):.0f} lines, p90 {p90:.0f}, "
        f"max {values.max()} ({max(lengths)[1]}); over 40 lines: {(values > 40).sum()}"
    )
    sys.path.insert(0, str(src.parent))
    config = importlib.import_module("napari_unetseg.core.config")
    top = [f.name for f in dataclasses.fields(config.TrainConfig)]
    print(f"TrainConfig top level: {len(top)} fields ({', '.join(top)})")


if __name__ == "__main__":
    main()
