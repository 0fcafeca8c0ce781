"""Objects at the scale the model learnt (issue 23, stop 45): the same object models'
predictions of a set's test split, with and without ``PredictConfig.match_size``
(core/object_scale.py: a slice whose objects lie outside the sizes the model learnt is
predicted again, zoomed to them).

    python benchmarks/object_scale.py --set sbsst265_1024x1280 MODEL.pt[:painted] ...

MODEL.pt: e.g. the model files benchmarks/objects_mode.py saves, or a starter
(``starter:nuclei-objects``). A model file saved before it recorded the sizes it learnt
gets them from the set's training split as objects_mode.py trains on it (its first
``--train-images``; ``:painted``: the objects objects_mode.py paints there), as the
trainer would have recorded them. Prints, per model, object F1@0.5 / AP@[0.5:0.95] / PQ
both ways and the test images whose scores changed.

``--scaled-floor`` (stop 46) scores a third way: matched, with the debris floor (objects
under 2 % of the training median are dropped) of each slice predicted again at zoom z
divided by z squared (the objects the model learnt are z**2 times smaller there), not
under 15 px; the product keeps the floor as it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, object_set, save_results  # noqa: E402
from objects_mode import painted_objects  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import PredictConfig  # noqa: E402
from napari_unetseg.core.events import ZoomEvent, run_generator  # noqa: E402
from napari_unetseg.core.instances import MIN_SIZE, median_object_size, objects_of_classes  # noqa: E402
from napari_unetseg.core.object_scale import depth_range  # noqa: E402
from napari_unetseg.core.object_sink import object_recipe, object_sink  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402


def objects_of(loaded, images: np.ndarray, match_size: bool) -> np.ndarray:
    """The images' objects as ``unetseg predict`` writes them, with or without the size match."""
    out = np.zeros(images.shape, np.uint32)
    config = PredictConfig(match_size=match_size)
    run_generator(
        iter_predict([loaded], images[:, None], config, labels_out=object_sink(loaded, out, len(out)))
    )
    return out


def objects_with_scaled_floor(loaded, images: np.ndarray) -> np.ndarray:
    """The matched objects with each zoomed slice's debris floor divided by its zoom squared."""
    classes, events = np.zeros(images.shape, np.uint32), []
    run_generator(iter_predict([loaded], images[:, None], PredictConfig(), labels_out=classes), events.append)
    zooms = {e.slice_index: e.zoom for e in events if isinstance(e, ZoomEvent)}
    interior, boundary, floor = object_recipe(loaded)
    return np.stack([
        objects_of_classes(plane, interior, boundary, max(MIN_SIZE, round(floor / zooms.get(i, 1.0) ** 2)))
        for i, plane in enumerate(classes)
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="MODEL.pt, or MODEL.pt:painted")
    parser.add_argument("--set", default="sbsst265_1024x1280")
    parser.add_argument("--train-images", type=int, default=64, help="as objects_mode.py")
    parser.add_argument("--name", default="")
    parser.add_argument("--scaled-floor", action="store_true", help="also: the floor scaled by the zoom")
    args = parser.parse_args()
    images, objects, train, test = object_set(args.set, "object_scale", args.train_images)
    truth = objects[test]
    rows = {}
    for text in args.models:
        path, _, how = text.partition(":") if not text.startswith("starter:") else (text, "", "")
        loaded = load_model(path)
        recorded = bool(loaded.object_depths)
        if not recorded:  # saved before the model file recorded them: as the trainer would have
            rng = np.random.default_rng(0)
            painted = how == "painted"
            stack = (
                np.stack([painted_objects(o, 0.25, rng) for o in objects[train]])
                if painted
                else objects[train]
            )
            labels = [stack]
            mode = "sparse" if painted else "dense"
            loaded.object_depths = depth_range(labels, mode)
            loaded.object_size = loaded.object_size or median_object_size(labels, mode)
        plain, matched = (evaluate_objects(objects_of(loaded, images[test], m), truth) for m in (False, True))
        changed = {
            int(i): (round(a.f1, 3), round(b.f1, 3))
            for i, a, b in zip(test, plain.images, matched.images)
            if abs(a.f1 - b.f1) > 1e-9
        }
        rows[text] = {"sizes recorded": recorded, "object_depths": loaded.object_depths,
                      "plain": plain.total(), "matched": matched.total(),
                      "changed images (F1)": changed}  # fmt: skip
        if args.scaled_floor:
            scaled = evaluate_objects(objects_with_scaled_floor(loaded, images[test]), truth)
            rows[text]["matched, floor scaled"] = scaled.total()
            rows[text]["floor scaled: changed images (F1)"] = {
                int(i): (round(a.f1, 3), round(b.f1, 3))
                for i, a, b in zip(test, matched.images, scaled.images)
                if abs(a.f1 - b.f1) > 1e-9
            }
    results = {"hardware": hardware(), "set": args.set, "test_images": len(test), "rows": rows}
    path = save_results(results, f"object_scale_{args.set}{args.name}")
    print(f"{args.set}: {len(test)} test images")
    print("| model | depths learnt (p10/p50/p90, px) | F1@0.5 | matched | AP@[0.5:0.95] | matched "
          "| PQ | matched |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for text, row in rows.items():
        a, b = row["plain"], row["matched"]
        depths = " / ".join(f"{d:.1f}" for d in row["object_depths"])
        print(f"| {text} | {depths} | {a['f1']:.3f} | {b['f1']:.3f} | {a['ap']:.3f} | {b['ap']:.3f} "
              f"| {a['panoptic_quality']:.3f} | {b['panoptic_quality']:.3f} |")  # fmt: skip
    for text, row in rows.items():
        print(f"changed ({text}): {row['changed images (F1)']}")
        if "matched, floor scaled" in row:
            c, changed = row["matched, floor scaled"], row["floor scaled: changed images (F1)"]
            print(f"  floor scaled: F1 {c['f1']:.3f}, AP {c['ap']:.3f}, {c['n_pred']} objects "
                  f"(matched: {row['matched']['n_pred']}); changed: {changed}")  # fmt: skip
    print(f"results in {path}")


if __name__ == "__main__":
    main()
