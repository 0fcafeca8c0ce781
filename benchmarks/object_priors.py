"""The class-prior correction of models trained on painted objects (issue 23, stop 44).

The correction (core/priors.py) is estimated after training and only shifts the logits, so
the same trained model can be scored under each variant. For painted object models that
``objects_mode.py --rows painted --seed S --name N`` saved, this rebuilds the estimator
as that run built it (the same painted labels, the same validation split, the same four
training slices), estimates the offsets from the model, and scores the test split (object
F1 at IoU 0.5, AP over IoU 0.5:0.95, objects found) with the offsets of

* ``half``: the EM over all three classes (as before stop 44), halved;
* ``object``: the EM of the background's share only, interior : boundary as painted
  (``priors.object_prior_bias`` with ``shrink=1``);
* ``object, half``: the same, halved (the product's since stop 44);

and with ``--all`` also ``none`` and ``full`` (the correction before stop 44).

    python benchmarks/object_priors.py --set dsb2018_fluo_256x256 MODEL.pt:SEED ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, object_set, save_results  # noqa: E402
from objects_mode import painted_objects, predict_objects  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects  # noqa: E402
from napari_unetseg.core.priors import object_prior_bias, prior_shift_bias  # noqa: E402


def offsets(model_file: str, seed: int, images: np.ndarray, painted: np.ndarray, everything: bool) -> dict:
    """The variants' logit offsets for one model, from the estimator its run built."""
    config = TrainConfig(steps=1, label_mode="sparse", objects=True, device="cpu", seed=seed)
    trainer = start_training([images[:, None]], [painted], ModelSpec(), config, RunOptions(init=model_file))
    estimator = trainer.priors  # the same items, train prior and painted proportions as the run's
    posteriors = np.concatenate([trainer._probabilities(x)[:, y < 0].T for x, y in estimator.items])
    full = prior_shift_bias(posteriors, estimator.train_prior)
    objects = object_prior_bias(posteriors, estimator.train_prior, estimator.within, shrink=1.0)
    variants = {"half": full / 2, "object": objects, "object, half": objects / 2}
    if everything:
        variants = {"none": np.zeros(3), "full": full, **variants}
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="MODEL.pt:SEED (the run's --seed)")
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--painted", type=float, default=0.25, help="as objects_mode.py --painted")
    parser.add_argument("--train-images", type=int, default=64, help="as objects_mode.py --train-images")
    parser.add_argument("--all", action="store_true", help="also no correction and the full one")
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    images, objects, train, test = object_set(args.set, "object_priors", args.train_images)
    rng = np.random.default_rng(0)  # the painted labels of objects_mode.py
    painted = np.stack([painted_objects(o, args.painted, rng) for o in objects[train]])
    table = {}
    print(f"{args.set}: {len(test)} test images")
    print("| model | offsets | background, interior, boundary | found | F1@0.5 | AP@[0.5:0.95] |")
    print("|---|---|---|---|---|---|")
    for item in args.models:
        model_file, seed = item.rsplit(":", 1)
        loaded = load_model(model_file)
        for name, bias in offsets(model_file, int(seed), images[train], painted, args.all).items():
            found = predict_objects(dataclasses.replace(loaded, logit_bias=tuple(bias)), images[test])
            t = evaluate_objects(found, objects[test]).total()
            table[f"{Path(model_file).stem} / {name}"] = {"bias": bias.tolist(), **t}
            shown = ", ".join(f"{b:+.2f}" for b in bias)
            scores = f"{t['n_pred']} | {t['f1']:.3f} | {t['ap']:.3f}"
            print(f"| {Path(model_file).stem} | {name} | {shown} | {scores} |")
    path = save_results(
        {"hardware": hardware(), "set": args.set, "rows": table}, f"object_priors_{args.set}{args.name}"
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
