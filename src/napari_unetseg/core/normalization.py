"""Percentile normalisation: one policy for training, the live preview and prediction.

What the network sees is scaled per channel so that its ``low`` percentile maps to 0 and
its ``high`` percentile to 1, from its own percentiles (``scope="slice"``, the default):
a 2D model's input is one slice (a plane of a stack, a frame of a time series), a 3D
model's input is the volume. So a slice gets the same labels whether it is predicted
alone, inside its stack, or shown as the training preview, and a stack whose slices
differ in brightness (bleaching, uneven illumination) is read slice by slice, as it is
seen. The recipe (not the numbers) is stored in the model file, so prediction normalises
new images the same way.

The default percentiles, 1 and 99 (Cellpose's), were chosen on the scribbles suite
(docs/benchmarks.md, issue 26): against 1 and 99.8 they lift fluorescence nuclei where a
few very bright nuclei sit beside dim ones and change membranes and evenly bright nuclei
by less than the spread of the training seeds. Model files keep the percentiles they
were trained with (the starters: 1 and 99.8).

A nearly empty image (objects on under 1 % of it: a field with one or two nuclei) has its
99th percentile in the background, and scaling that to 1 would blow its noise up to the
brightness of an object: a network then finds hundreds of objects in the noise (two such
fields of DSB2018's 256 px test images gave 408 and 230 false objects). So when the high
percentile lies within the background's noise (no more than :data:`NOISE` times as far
above the median as the median is above the low percentile, as noise around the median
is), the high value is kept at least ``min_range`` (a fifth) of the way from the low value
to the brightest pixels (the 99.99th percentile). An image whose objects cover more than a
few percent of it, or dim objects beside a few bright ones, are left as they are: of the
654 images and volumes of the shared sets it acts on 3, each a field of one or two nuclei
(``benchmarks/normalisation_floor.py``). Model files written before it keep scaling
without it (``min_range`` 0).

Model files of napari-unetseg 0.1 scaled every slice of a stack with the whole stack's
percentiles (``scope="stack"``); they keep doing so, so they predict what they predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from napari_unetseg.core.errors import UserInputError

_MAX_SAMPLES = 4_000_000
_MAX_SLICES = 64
_BRIGHTEST = 99.99  # the percentile taken as the brightest pixels (not one hot pixel)
NOISE = 3.0  # the high percentile is "within the noise" up to this many times (median - low) above the median
SCOPES = ("slice", "stack")


@dataclass(frozen=True)
class Normalization:
    """Percentile normalisation recipe: the ``low`` and ``high`` percentiles of each
    image (per channel) map to 0 and 1; where the high percentile lies within the noise,
    the high value is at least ``min_range`` of the way from the low value to the
    brightest pixels (module text; 0 turns that off)."""

    low: float = 1.0
    high: float = 99.0
    scope: str = "slice"
    min_range: float = 0.2

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise UserInputError(
                f"unknown normalisation scope {self.scope!r}; known: {', '.join(SCOPES)}",
                subject="normalization",
            )
        bad = any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (self.low, self.high))
        if bad or not 0 <= self.low < self.high <= 100:
            raise UserInputError(
                f"percentiles must satisfy 0 <= low < high <= 100, got low={self.low!r}, high={self.high!r}",
                subject="normalization",
            )
        bad = isinstance(self.min_range, bool) or not isinstance(self.min_range, (int, float))
        if bad or not 0 <= self.min_range < 1:
            raise UserInputError(
                f"min_range must be at least 0 and below 1, got {self.min_range!r}", subject="normalization"
            )

    def to_dict(self) -> dict:
        return {"method": "percentile", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        """Read :meth:`to_dict`'s form; a missing percentile keeps its default."""
        data = dict(data)
        if data.pop("method", "percentile") != "percentile":
            raise UserInputError(f"unknown normalisation method {data.get('method')!r}")
        unknown = sorted(set(data) - {"low", "high", "scope", "min_range"})
        if unknown:
            raise UserInputError(
                f"unknown normalization option(s) {', '.join(unknown)}; "
                "known: high, low, method, min_range, scope"
            )
        for key in sorted(set(data) - {"scope"}):
            value = data[key]
            try:
                if isinstance(value, bool):
                    raise TypeError(key)
                data[key] = float(value)
            except (TypeError, ValueError):
                raise UserInputError(f"normalization {key} must be a number, got {value!r}") from None
        return cls(**data)

    def percentile_dict(self) -> dict:
        """:meth:`to_dict` without the scope and ``min_range``: the model file's
        ``normalization`` entry, in the layout napari-unetseg 0.1 reads (the other two
        have entries of their own)."""
        return {"method": "percentile", "low": self.low, "high": self.high}

    def percentiles(self, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(low, high)`` values of a ``(N, C, Y, X)`` stack.

        Large stacks are subsampled on a regular grid (at most 64 slices and a few
        million values per channel), which changes the percentiles negligibly and keeps memory flat.
        A channel whose percentiles coincide falls back to its min and max; ``low == high``
        is left only for a constant channel. Where the high percentile lies within the
        noise, the high value is raised to ``min_range`` of the way to the brightest
        pixels if it is below (module text).
        """
        n, c, h, w = stack.shape
        slices = np.unique(np.linspace(0, n - 1, min(n, _MAX_SLICES)).round().astype(int))
        stride = max(1, int(np.ceil(np.sqrt(len(slices) * h * w / _MAX_SAMPLES))))
        sample = np.stack([np.asarray(stack[i][:, ::stride, ::stride]) for i in slices])
        sample = np.moveaxis(sample.astype(np.float32), 1, 0).reshape(c, -1)
        if not np.isfinite(sample).all():
            raise UserInputError("the image contains NaN or infinite values: clean it first")
        lo, median, hi, brightest = np.percentile(sample, [self.low, 50, self.high, _BRIGHTEST], axis=1)
        lo, hi = lo.astype(np.float32), hi.astype(np.float32)
        flat = hi <= lo  # e.g. a sparse image that is 0 almost everywhere: use min and max
        lo[flat] = sample[flat].min(axis=1)
        hi[flat] = sample[flat].max(axis=1)
        in_noise = (median > lo) & (hi - median <= NOISE * (median - lo)) & ~flat
        floor = (lo + self.min_range * (brightest - lo)).astype(np.float32)
        hi[in_noise] = np.maximum(hi, floor)[in_noise]
        return lo, hi

    @staticmethod
    def apply(slab: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Scale a ``(..., C, Y, X)`` array with per-channel ``lo``/``hi`` to float32."""
        slab = np.asarray(slab, dtype=np.float32)
        scale = 1.0 / np.maximum(hi - lo, 1e-6)
        return (slab - lo[:, None, None]) * scale[:, None, None]

    def normalize(self, stack: np.ndarray) -> np.ndarray:
        """Normalise a whole ``(N, C, Y, X)`` stack with its percentiles (loads it into memory)."""
        lo, hi = self.percentiles(stack)
        return self.apply(stack, lo, hi)

    def slice_reader(self, stack: np.ndarray) -> Callable[[int], np.ndarray]:
        """``index -> `` the normalised ``(C, Y, X)`` slice ``index`` of a ``(N, C, Y, X)``
        stack, as a 2D model sees it: from the slice's own percentiles (``scope="slice"``),
        or from the whole stack's (``"stack"``, computed here once). Reads one slice per call."""
        if self.scope == "stack":
            lo, hi = self.percentiles(stack)
            return lambda index: self.apply(np.asarray(stack[index]), lo, hi)

        def read(index: int) -> np.ndarray:
            raw = np.asarray(stack[index])
            return self.apply(raw, *self.percentiles(raw[None]))

        return read
