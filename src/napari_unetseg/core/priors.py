"""Class-prior correction for sparse labels.

Scribbles say what each class looks like, not how much of the image it covers: on the
ISBI 2012 benchmark two thirds of the painted pixels are membrane while a fifth of the
image is, and with class weights the loss sees every painted class equally often. A
network trained on such strokes learns that training prior and calls too many pixels of
the rare class (thick membranes, swollen nuclei).

The fix is the classic prior-shift adjustment of Saerens, Latinne and Decaestecker,
"Adjusting the outputs of a classifier to new a priori probabilities: a simple
procedure", Neural Computation 14 (2002): estimate the class frequencies of the
*unpainted* pixels by expectation-maximisation over the network's own posteriors, then
add ``log(new prior / training prior)`` to each class's logit. Nothing is retrained; the
offsets are stored in the model file and applied at prediction.
"""

from __future__ import annotations

import numpy as np

MAX_BIAS = 5.0  # |log prior ratio| kept below this: e^5 ~ 150x


def estimate_prior(
    posteriors: np.ndarray, train_prior: np.ndarray, iterations: int = 200, tol: float = 1e-7
) -> np.ndarray:
    """The class prior of a set of unlabelled samples, by EM (Saerens et al. 2002).

    Parameters
    ----------
    posteriors
        ``(N, K)`` class probabilities the classifier gives the unlabelled samples.
    train_prior
        ``(K,)`` class frequencies the classifier was trained with.
    iterations, tol
        At most ``iterations`` EM steps; stop when the prior moves less than ``tol``.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` estimated class prior of the unlabelled samples (sums to 1).
    """
    posteriors = np.asarray(posteriors, dtype=np.float64)
    train_prior = np.asarray(train_prior, dtype=np.float64)
    prior = train_prior.copy()
    for _ in range(iterations):
        adjusted = posteriors * (prior / train_prior)
        adjusted /= np.maximum(adjusted.sum(axis=1, keepdims=True), 1e-300)
        new = adjusted.mean(axis=0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior


def prior_shift_bias(posteriors: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Logit offsets ``log(estimated prior / train prior)`` per class, centred on 0 and
    clipped to +-:data:`MAX_BIAS` (a class the EM drives to zero must not vanish).
    A class nobody painted keeps a zero offset."""
    train_prior = np.asarray(train_prior, dtype=np.float64)
    painted = train_prior > 0
    if painted.sum() < 2:
        return np.zeros_like(train_prior)
    bias = np.zeros_like(train_prior)
    bias[painted] = _painted_bias(np.asarray(posteriors)[:, painted], train_prior[painted])
    return bias


def _painted_bias(posteriors: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    train_prior = train_prior / train_prior.sum()
    prior = estimate_prior(posteriors, train_prior)
    bias = np.log(np.maximum(prior, 1e-12)) - np.log(train_prior)
    bias -= bias.mean()
    return np.clip(bias, -MAX_BIAS, MAX_BIAS)


OBJECT_SHRINK = 0.5  # painted objects: the share of the estimated offsets applied (docs/engine.md)


def object_prior_bias(
    posteriors: np.ndarray, train_prior: np.ndarray, within: np.ndarray, shrink: float = OBJECT_SHRINK
) -> np.ndarray:
    """Logit offsets of a run on painted objects (classes background, interior, boundary,
    in that order).

    Objects are painted whole, so inside them the painted proportions ``within``
    (interior, boundary; not weighted) are the true ones; what the paint misstates is how
    much of the image is background. The EM therefore estimates only the background's
    share of the unpainted pixels (two classes: background against interior + boundary),
    the new prior is that share and the rest split by ``within``, and the offsets
    ``log(new prior / train prior)``, centred, are multiplied by ``shrink`` (the EM on the
    network's own posteriors overshoots: docs/engine.md, "Objects") and clipped to
    +-:data:`MAX_BIAS`.
    """
    posteriors = np.asarray(posteriors, dtype=np.float64)
    train_prior = np.asarray(train_prior, dtype=np.float64)
    train_prior = train_prior / train_prior.sum()
    two = np.stack([posteriors[:, 0], posteriors[:, 1:].sum(1)], 1)
    background, objects = estimate_prior(two, np.array([train_prior[0], train_prior[1:].sum()]))
    new = np.array([background, objects * within[0], objects * within[1]])
    bias = np.log(np.maximum(new, 1e-12)) - np.log(np.maximum(train_prior, 1e-12))
    return np.clip(shrink * (bias - bias.mean()), -MAX_BIAS, MAX_BIAS)


PRIOR_SLICES, PRIOR_CROP = 4, 512  # the estimate looks at this much of the training data


class PriorEstimator:
    """The class-prior correction of a sparse-label run, re-estimated at every save.

    Holds up to :data:`PRIOR_SLICES` evenly spaced training slices (centre crops of at
    most :data:`PRIOR_CROP` pixels a side: enough pixels for a prior, a bounded cost per
    save) and the prior the loss trains with: painted frequencies, times the class
    weights when there are some (median-frequency weights make it uniform over the
    painted classes).

    Parameters
    ----------
    images, targets
        Normalised ``(C, Y, X)`` training slices and their encoded labels (``-1`` unpainted).
    num_classes
        ``K``.
    class_weights
        ``(K,)`` weights of the loss, or ``None``.
    objects
        The classes are painted objects' background, interior and boundary
        (:func:`object_prior_bias`).
    """

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list[np.ndarray],
        num_classes: int,
        class_weights,
        objects: bool = False,
    ):
        painted = np.concatenate([y[y >= 0] for y in targets])
        prior = np.bincount(painted, minlength=num_classes)[:num_classes].astype(np.float64)
        self.within = prior[1:] / max(prior[1:].sum(), 1e-12) if objects else None
        if class_weights is not None:
            prior *= np.asarray(class_weights, dtype=np.float64)
        self.train_prior = prior / max(prior.sum(), 1e-12)
        picks = np.unique(np.linspace(0, len(images) - 1, min(PRIOR_SLICES, len(images))).round().astype(int))
        self.items = []
        for i in picks:
            h, w = targets[i].shape
            top, left = max(0, (h - PRIOR_CROP) // 2), max(0, (w - PRIOR_CROP) // 2)
            window = (slice(top, top + PRIOR_CROP), slice(left, left + PRIOR_CROP))
            if (targets[i][window] < 0).any():
                self.items.append((images[i][(slice(None), *window)], targets[i][window]))

    def estimate(self, probabilities) -> tuple[float, ...]:
        """Logit offsets from ``probabilities(x) -> (K, Y, X)`` (the network's class
        probabilities, no correction) on the unpainted pixels of the held slices;
        ``()`` when none of them has unpainted pixels."""
        if not self.items:
            return ()
        posteriors = np.concatenate([probabilities(x)[:, y < 0].T for x, y in self.items])
        if self.within is not None:
            bias = object_prior_bias(posteriors, self.train_prior, self.within)
        else:
            bias = prior_shift_bias(posteriors, self.train_prior)
        return tuple(float(b) for b in bias)
