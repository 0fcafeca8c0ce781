"""The Train dock's choices and their help texts (no Qt): the defaults come from the core
config classes, each in one place."""

from __future__ import annotations

from napari_unetseg.core.config import AUTO_START, AUTO_START_FIT, ModelSpec, TrainConfig, defaults
from napari_unetseg.core.models import MODELS, parameter_count

MODEL, TRAIN = defaults(ModelSpec), defaults(TrainConfig)
LABEL_MODES = [("sparse: 0 = unpainted (ignored)", "sparse"), ("dense: 0 = background", "dense")]
WIDTHS = sorted({8, 16, 32, 64, MODEL["base_channels"]})
UNPAINTED_TIP = (
    "Sparse labels: also ask the network to give the same answer on a flipped, turned and zoomed copy "
    "of every patch, on all pixels of the painted slices, painted or not. For thin structures "
    "(membranes) painted with a few strokes; not for nuclei. Each step costs about twice as much."
)
OBJECTS_TIP = (
    "The labels are objects: sparse, each object painted whole with its own label (2, 3, ...) "
    "and background strokes with label 1; dense, every object its own id and 0 = background. "
    "The network learns to separate touching objects and Predict gives one label per object."
)
SEED_TIP = (
    "The same seed on the same labels gives the same run. Another seed starts from other "
    "initial weights and draws other patches and flips: train two or three and predict with "
    "all of their model files (an ensemble), so that one unlucky run cannot spoil the result."
)
TRIES_TIP = (
    "Start this many runs (seeds Seed, Seed+1, ...) for a quarter of the steps each, keep the "
    "one whose loss is lowest and train it to the end; the others are dropped. Runs on a few "
    "strokes can fail with one seed, and the failed ones fit the strokes worse from early on. "
    "Costs a quarter of the steps per extra try."
)


def z_step(layer) -> float:
    """The z step of an image layer over its pixel size, from ``layer.scale`` (1 for 2D)."""
    scale = [float(v) for v in layer.scale]
    if len(scale) < 3 or scale[-1] <= 0 or scale[-3] <= 0:
        return 1.0
    return scale[-3] / scale[-1]


def model_choices(width: int, depth: int) -> list[tuple[str, str]]:
    """Every architecture, labelled with its size at ``width`` and ``depth``."""
    spec = ModelSpec(depth=depth, base_channels=width)
    return [(f"{name}  ({parameter_count(spec.replace(name=name)) / 1e6:.1f} M)", name) for name in MODELS]


START_TIP = (
    "Random weights (the default); auto: a starter model shipped with the plugin when one already gives "
    f"at least {100 * AUTO_START_FIT:.0f} % of your labels their class (it predicts the most painted "
    "slices first), else random weights, and the status line says which; a starter model shipped with "
    "the plugin (trained on many images of one kind: it is useful before any training, and 25-50 steps "
    "on your strokes fit it to your images; see its card), or a model file of yours. Classes of the "
    "same name keep what the model knew of them. A model trained on full masks (every starter) is "
    "fine-tuned at a tenth of the learning rate."
)


def start_choices() -> list[tuple[str, str]]:
    """The Train dock's "Start from" choices: (label, value) with the starters by name."""
    from napari_unetseg.core.starters import PREFIX, available

    starters = [(f"starter {s.name}: {s.description}", f"{PREFIX}{s.name}") for s in available().values()]
    auto = ("auto: a starter if one fits the labels", AUTO_START)
    return [("random weights", ""), auto, *starters, ("a model file...", "file")]
