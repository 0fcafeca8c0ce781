"""Per-image percentile normalisation.

Each image (one file, one layer: the whole stack) is scaled per channel so that its
``low`` percentile maps to 0 and its ``high`` percentile to 1. The recipe (not the
numbers) is stored in the model file, so prediction normalises each new image the same
way from its own percentiles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from napari_unetseg.core.errors import UserInputError

_MAX_SAMPLES = 4_000_000
_MAX_SLICES = 64


@dataclass(frozen=True)
class Normalization:
    """Percentile normalisation recipe: the ``low`` and ``high`` percentiles of each
    image (per channel) map to 0 and 1."""

    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        bad = any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (self.low, self.high))
        if bad or not 0 <= self.low < self.high <= 100:
            raise UserInputError(
                f"percentiles must satisfy 0 <= low < high <= 100, got low={self.low!r}, high={self.high!r}",
                subject="normalization",
            )

    def to_dict(self) -> dict:
        return {"method": "percentile", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        """Read :meth:`to_dict`'s form; a missing percentile keeps its default."""
        data = dict(data)
        if data.pop("method", "percentile") != "percentile":
            raise UserInputError(f"unknown normalisation method {data.get('method')!r}")
        unknown = sorted(set(data) - {"low", "high"})
        if unknown:
            raise UserInputError(
                f"unknown normalization option(s) {', '.join(unknown)}; known: high, low, method"
            )
        return cls(**{key: float(value) for key, value in data.items()})

    def percentiles(self, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(low, high)`` values of a ``(N, C, Y, X)`` stack.

        Large stacks are subsampled on a regular grid (at most 64 slices and a few
        million values per channel), which changes the percentiles negligibly and keeps memory flat.
        A channel whose percentiles coincide falls back to its min and max; ``low == high``
        is left only for a constant channel.
        """
        n, c, h, w = stack.shape
        slices = np.unique(np.linspace(0, n - 1, min(n, _MAX_SLICES)).round().astype(int))
        stride = max(1, int(np.ceil(np.sqrt(len(slices) * h * w / _MAX_SAMPLES))))
        sample = np.stack([np.asarray(stack[i][:, ::stride, ::stride]) for i in slices])
        sample = np.moveaxis(sample.astype(np.float32), 1, 0).reshape(c, -1)
        if not np.isfinite(sample).all():
            raise UserInputError("the image contains NaN or infinite values: clean it first")
        lo = np.percentile(sample, self.low, axis=1).astype(np.float32)
        hi = np.percentile(sample, self.high, axis=1).astype(np.float32)
        flat = hi <= lo  # e.g. a sparse image that is 0 almost everywhere: use min and max
        lo[flat] = sample[flat].min(axis=1)
        hi[flat] = sample[flat].max(axis=1)
        return lo, hi

    @staticmethod
    def apply(slab: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Scale a ``(..., C, Y, X)`` array with per-channel ``lo``/``hi`` to float32."""
        slab = np.asarray(slab, dtype=np.float32)
        scale = 1.0 / np.maximum(hi - lo, 1e-6)
        return (slab - lo[:, None, None]) * scale[:, None, None]

    def normalize(self, stack: np.ndarray) -> np.ndarray:
        """Normalise a whole ``(N, C, Y, X)`` stack (loads it into memory)."""
        lo, hi = self.percentiles(stack)
        return self.apply(stack, lo, hi)
