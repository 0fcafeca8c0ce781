"""Where a 2D object model's errors are (issue 23, stop 46): every false object and every
missed nucleus of a set's test split, by kind, for object model files and for the
connected components of the true foreground (the ceiling of pixel-only methods).

    python benchmarks/object_errors.py --set dsb2018_fluo_256x256 MODEL.pt [MODEL.pt ...]

The objects are what ``unetseg predict`` writes (the size match on). The one-to-one
matching at IoU 0.5 and the merged objects are core/objects.py's (as the scores and the
Evaluate dock's error view). Kinds:

* a false object (matched to no nucleus): over two or more nuclei (a merge: it holds more
  than half of each); over no labelled nucleus, touching the image's edge (nuclei cut by
  the edge that the labels leave out, mostly) or inside it; else over part of a nucleus
  or badly outlined (IoU under 0.5);
* a missed nucleus (matched to no object): inside a merged object; nothing predicted over
  it; else badly outlined or split. And how many of the missed are under 40 pixels.

AP@0.5 is the DSB2018 score at IoU 0.5 alone (matched / (matched + false + missed), mean
over the images), the figure StarDist reports on its DSB2018 subset. And how well the
matched nuclei are outlined: the median IoU of the matched pairs, for
the nuclei that touch no other nucleus and for those that touch one (4-connected).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components
from skimage.segmentation import relabel_sequential

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, object_set, save_results  # noqa: E402
from object_scale import objects_of  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects, holders, match, overlaps  # noqa: E402

SMALL = 40  # pixels: a missed nucleus this small is counted apart
KINDS = (
    "false: over two or more nuclei",
    "false: over no labelled nucleus, at the image edge",
    "false: over no labelled nucleus, inside",
    "false: over part of a nucleus, or badly outlined",
    "missed: inside a merged object",
    "missed: nothing predicted over it",
    "missed: badly outlined or split",
    f"missed: of them under {SMALL} px",
)
IOUS = ("matched IoU, nuclei touching none (median)", "matched IoU, nuclei touching another (median)")


def kinds_of(truth: np.ndarray, pred: np.ndarray) -> Counter:
    """The false objects and missed nuclei of one image, counted by kind (:data:`KINDS`)."""
    truth, pred = relabel_sequential(truth)[0], relabel_sequential(pred)[0]
    found = overlaps(truth, pred)
    pairs, _ = match(found, 0.5)
    merged = set(holders(found, by_true=False).tolist())
    over_truth = set(found.pairs[:, 1].tolist())
    rim = np.concatenate([pred[0], pred[-1], pred[:, 0], pred[:, -1]])
    at_edge = set((np.unique(rim[rim > 0]) - 1).tolist())
    counts = Counter()
    for j in sorted(set(range(len(found.pred_area))) - set(pairs[:, 1].tolist())):
        if j in merged:
            counts[KINDS[0]] += 1
        elif j not in over_truth:
            counts[KINDS[1] if j in at_edge else KINDS[2]] += 1
        else:
            counts[KINDS[3]] += 1
    held = found.intersection * 2 > found.true_area[found.pairs[:, 0]]
    in_merge = {int(i) for i, j in found.pairs[held] if int(j) in merged}
    under = set(found.pairs[:, 0].tolist())
    for i in sorted(set(range(len(found.true_area))) - set(pairs[:, 0].tolist())):
        counts[KINDS[4] if i in in_merge else KINDS[5] if i not in under else KINDS[6]] += 1
        counts[KINDS[7]] += int(found.true_area[i] < SMALL)
    return counts


def matched_ious(truth: np.ndarray, pred: np.ndarray) -> tuple[list[float], list[float]]:
    """The IoUs of the matched pairs of one image: of the nuclei that touch no other, and
    of those that touch one."""
    truth, pred = relabel_sequential(truth)[0], relabel_sequential(pred)[0]
    touching = np.zeros(int(truth.max()) + 1, bool)
    for a, b in ((truth[1:], truth[:-1]), (truth[:, 1:], truth[:, :-1])):
        meet = (a > 0) & (b > 0) & (a != b)
        touching[a[meet]] = touching[b[meet]] = True
    pairs, iou = match(overlaps(truth, pred), 0.5)
    alone = ~touching[pairs[:, 0] + 1]
    return iou[alone].tolist(), iou[~alone].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", help="object model files (or starter:NAME)")
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    images, objects, _, test = object_set(args.set, "object_errors", 0)
    truth = objects[test]
    rows = {
        "components of the true foreground": np.stack(
            [connected_components(t > 0, connectivity=1) for t in truth]
        )
    }
    for text in args.models:
        rows[Path(text).stem] = objects_of(load_model(text), images[test], match_size=True)
    table = {}
    for name, found in rows.items():
        counts = sum((kinds_of(t, p) for t, p in zip(truth, found)), Counter())
        evaluation = evaluate_objects(found, truth)
        total = evaluation.total()
        alone, touching = (
            [iou for image in ious for iou in image] for ious in zip(*map(matched_ious, truth, found))
        )
        table[name] = {
            "f1": total["f1"],
            "ap": total["ap"],
            "ap@0.5": float(np.nanmean([image.ap_at[0.5] for image in evaluation.images])),
            "fp": total["fp"],
            "fn": total["fn"],
            **{k: counts[k] for k in KINDS},
            IOUS[0]: float(np.median(alone)),
            IOUS[1]: float(np.median(touching)),
        }
    path = save_results(
        {"hardware": hardware(), "set": args.set, "rows": table}, f"object_errors_{args.set}{args.name}"
    )
    print(f"{args.set}: {len(test)} test images, {int(sum(len(np.unique(t)) - 1 for t in truth))} nuclei")
    print("| | " + " | ".join(table) + " |")
    print("|---" * (len(table) + 1) + "|")
    for key in ("f1", "ap", "ap@0.5", "fp", *KINDS[:4], "fn", *KINDS[4:], *IOUS):
        cells = [str(row[key]) if isinstance(row[key], int) else f"{row[key]:.3f}" for row in table.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"results in {path}")


if __name__ == "__main__":
    main()
