"""Membrane Dice of ISBI scribble models alone and as an ensemble (test slices 24-29).

Takes model files saved by ``isbi_sparse.py --save-models`` (e.g. one draw of strokes
trained with several ``--train-seed``s) and scores each one and their ensemble, which
averages the members' class probabilities (``unetseg predict --model A --model B ...``).
Each member's line ends with its final training loss (the mean over its last epoch).

    python benchmarks/isbi_ensemble.py results/a_scribbles.pt results/b_scribbles.pt ... [--tta] [--name N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, save_results  # noqa: E402
from isbi_predictions import isbi_test_slices, scores  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import PredictConfig  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--name", default="isbi_ensemble", help="results file name")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    args = parser.parse_args()
    images, truth = isbi_test_slices()
    machine = hardware()
    print(machine)
    members = [load_model(path) for path in args.models]
    config = PredictConfig(tile_size=512, tta=args.tta)
    results = {}
    for path, member in [*zip(args.models, members), ("ensemble", members)]:
        labels = predict_stack(member, images, config).labels
        line = scores(labels == 1, truth)
        if path != "ensemble" and member.history:  # needs no labels: flags runs that fit badly
            line += f"  final training loss {member.history[-1]['train_loss']:.3f}"
        results[str(path)] = line
        print(f"{Path(path).name}: {line}", flush=True)
    save_results({"hardware": machine, "tta": args.tta, "results": results}, args.name)


if __name__ == "__main__":
    main()
