"""Membrane Dice, precision, recall and predicted membrane fraction of saved ISBI predictions.

Reads label TIFFs written by ``isbi_sparse.py`` (``results/NAME_ARM.tif``, test slices
24-29, 1 = membrane) and, with ``--vote``, also scores their pixel-wise majority vote.

    python benchmarks/isbi_predictions.py results/a_scribbles.tif results/b_scribbles.tif ... [--vote]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA  # noqa: E402

TEST = slice(24, 30)


def isbi_test_slices() -> tuple[np.ndarray, np.ndarray]:
    """The ISBI test slices 24-29: images ``(6, 1, Y, X)`` and their membrane masks
    (exits with a message when the data is absent)."""
    folder = DATA / "isbi2012_em_membranes"
    if not folder.is_dir():
        sys.exit(f"data not found: {folder}")
    images = tifffile.imread(folder / "images.tif")[TEST][:, None]
    return images, tifffile.imread(folder / "labels.tif")[TEST] == 1


def scores(membrane: np.ndarray, truth: np.ndarray) -> str:
    hit = (membrane & truth).sum()
    dice = 2 * hit / (membrane.sum() + truth.sum())
    return (
        f"Dice {dice:.4f}  precision {hit / membrane.sum():.3f}  recall {hit / truth.sum():.3f}  "
        f"membrane fraction {membrane.mean():.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("predictions", nargs="+", type=Path)
    parser.add_argument("--vote", action="store_true", help="also score the majority vote of the predictions")
    args = parser.parse_args()
    _, truth = isbi_test_slices()
    print(f"truth: membrane fraction {truth.mean():.3f}")
    votes = []
    for path in args.predictions:
        membrane = tifffile.imread(path) == 1
        votes.append(membrane)
        print(f"{path.name:28s} {scores(membrane, truth)}")
    if args.vote:
        majority = np.sum(votes, axis=0) * 2 > len(votes)
        print(f"{'majority vote':28s} {scores(majority, truth)}")


if __name__ == "__main__":
    main()
