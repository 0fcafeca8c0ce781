"""What an object model's prediction costs beyond its network (issue 23, stop 46): the
same model file and test images predicted three ways in one process, best of ``--repeats``:

* ``classes``: the class image only (``unetseg predict --semantic``): the reference;
* ``objects, no size match``: the objects (``--no-size-match``): the network and one
  seeded watershed per slice;
* ``objects``: as ``unetseg predict`` writes them (the size match on).

Ratios to ``classes`` are what to compare across machines; on a GPU the network's share
shrinks and the object step's grows. Run it with another tree's ``src`` on
``PYTHONPATH`` to compare two versions of the engine on the same machine.

    python benchmarks/object_prediction_time.py MODEL.pt [--set dsb2018_fluo_256x256] [--images 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, object_set, save_results  # noqa: E402

import napari_unetseg  # noqa: E402
from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import PredictConfig  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402

try:  # stop 46 moved the sink out of instances.py
    from napari_unetseg.core.object_sink import object_sink  # noqa: E402
except ImportError:
    from napari_unetseg.core.instances import object_sink  # noqa: E402


def seconds(loaded, images: np.ndarray, objects: bool, match_size: bool, repeats: int) -> float:
    """The best wall time of ``repeats`` predictions of ``images``."""
    best = float("inf")
    for _ in range(repeats):
        out = np.zeros(images.shape, np.uint32)
        sink = object_sink(loaded, out, len(out)) if objects else out
        config = PredictConfig(device="cpu", match_size=match_size)
        start = time.perf_counter()
        run_generator(iter_predict([loaded], images[:, None], config, labels_out=sink))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--images", type=int, default=20, help="the first N test images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    images, _, _, test = object_set(args.set, "object_prediction_time", 0)
    images = images[test[: args.images]]
    loaded = load_model(args.model)
    seconds(loaded, images[:1], True, True, 1)  # warm up
    rows = {
        "classes": seconds(loaded, images, False, False, args.repeats),
        "objects, no size match": seconds(loaded, images, True, False, args.repeats),
        "objects": seconds(loaded, images, True, True, args.repeats),
    }
    source = Path(napari_unetseg.__file__).parents[2]
    results = {"hardware": hardware(), "set": args.set, "images": len(images), "engine": str(source),
               "seconds": rows}  # fmt: skip
    path = save_results(results, f"object_prediction_time_{args.set}{args.name}")
    print(f"{args.set}: {len(images)} test images, {Path(args.model).name}, engine {source}")
    print("| prediction | seconds | ratio to classes |")
    print("|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.2f} | {value / rows['classes']:.2f} |")
    print(f"results in {path}")


if __name__ == "__main__":
    main()
