"""Loss settings on the bundled synthetic sample, trained the way ``unetseg demo`` trains.

Each arm is a JSON dict of TrainConfig overrides; prints nucleus Dice over the 4 slices
and the fraction of pixels predicted as nucleus (truth: about 15 %).

    python benchmarks/sample_ablation.py '{"smoothness_weight": 0.0}' '{"smoothness_weight": 10.0}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware  # noqa: E402

from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig  # noqa: E402
from napari_unetseg.core.metrics import evaluate  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402
from napari_unetseg.core.sample import make_sample  # noqa: E402
from napari_unetseg.core.training import train  # noqa: E402


def main() -> None:
    print(hardware())
    sample = make_sample()
    for arm in sys.argv[1:] or ["{}"]:
        start = time.time()
        options = {"steps": 150, "patch_size": 128, "batch_size": 8, "steps_per_epoch": 50, **json.loads(arm)}
        spec = ModelSpec("unet", base_channels=16, depth=4)
        config = TrainConfig.from_dict(options)  # also the flat keys of earlier versions
        result = train([sample.image[:, None]], [sample.strokes], spec, config)
        labels = predict_stack(result.loaded, sample.image[:, None], PredictConfig()).labels
        scores = evaluate(labels, sample.truth, surface=False)
        print(
            f"{arm:50s} nucleus Dice {scores.per_class[2]['dice']:.3f}  "
            f"predicted nucleus {(labels == 2).mean():.3f}  {time.time() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
