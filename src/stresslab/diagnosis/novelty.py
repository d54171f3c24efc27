"""Two witnesses the run itself holds, beside the probes' records.

``given_label``: the model's probability of the given (test) label. A mislabeled image is
one the model reads as another class while giving its label less than three in four
correctly classified images give even their runner-up class; an ordinary error usually keeps
its true class as a close second.

``novelty``: how far an image is from the training data, from independent witnesses joined
on one scale: the logit-space OOD score (energy), the feature-space kNN distance (both from
the ``ood`` probe), the pixel-space kNN distance to a seeded sample of training images
(computed here, model-free: it sees inverted, noise or foreign images a confident model may
embed among the classes) and the same distance on the images' coarse shape (7x7,
standardized per image: darkening, flattening or blockiness barely move it, a foreign
layout does). Each is turned into its percentile among the correctly classified
test images; the novelty is their combination by Fisher's method (the mean of
``-log`` of each tail share, see :func:`combined`), and its own percentile among the correct
images is what the rule cuts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stresslab.data.cache import release_pages
from stresslab.data.indexed import IndexedArray
from stresslab.diagnosis.image_stats import unit_pixels

#: Pixel-space kNN: training images sampled, neighbour rank, and the side images are pooled to.
PIXEL_TRAIN_SAMPLE = 3000
PIXEL_K = 10
PIXEL_SIDE = 14
#: Correctly classified test images the pixel distance is measured on (the reference).
PIXEL_REFERENCE = 2000
#: Side of the coarse grid the shape distance compares images on.
SHAPE_SIDE = 7


def percentile_among(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Percent (0-100) of the finite ``reference`` values strictly below each of ``values``;
    NaN where a value is NaN or there is no reference."""
    ref = np.sort(reference[np.isfinite(reference)])
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if len(ref):
        out[ok] = 100.0 * np.searchsorted(ref, values[ok], side="left") / len(ref)
    return out


def _pooled(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(unit_pixels(x))
    side = min(PIXEL_SIDE, t.shape[2], t.shape[3])
    return F.adaptive_avg_pool2d(t, side).flatten(1)


def _shape(x: np.ndarray) -> torch.Tensor:
    """Images reduced to their coarse shape: the channel mean average-pooled to at most
    7x7, then standardized per image (mean 0, standard deviation 1; a flat image stays flat)."""
    t = torch.from_numpy(unit_pixels(x)).mean(dim=1, keepdim=True)
    side = min(SHAPE_SIDE, t.shape[2], t.shape[3])
    f = F.adaptive_avg_pool2d(t, side).flatten(1)
    f = f - f.mean(dim=1, keepdim=True)
    return f / f.std(dim=1, keepdim=True).clamp_min(1e-3)


def pixel_distance(
    images: np.ndarray,
    train_images: np.ndarray | IndexedArray,
    which: np.ndarray,
    seed: int = 0,
    *,
    shape: bool = False,
) -> np.ndarray:
    """Euclidean distance of the test images at positions ``which`` to their 10th nearest of
    up to 3,000 training images drawn with ``seed``; (N,) float64, NaN outside ``which``.

    ``shape=False``: pixels in [0, 1], images average-pooled to at most 14x14 (cost:
    len(which) x 3,000 x 196). ``shape=True``: the images' coarse shape (see :func:`_shape`;
    units: standard deviations of the image's own 7x7 grid, cost len(which) x 3,000 x 49),
    which discounts what damage does to an image of a class (darkening, flattening,
    washing out, noise and blockiness at most a few pixels across) but not what sets an
    image of no class apart (its layout)."""
    n = len(images)
    out = np.full(n, np.nan)
    if not len(which) or not len(train_images):
        return out
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train_images), min(PIXEL_TRAIN_SAMPLE, len(train_images)), replace=False)
    form = _shape if shape else _pooled
    train = form(train_images[np.sort(pick)])
    k = min(PIXEL_K, len(train))
    for start in range(0, len(which), 1024):
        rows = which[start : start + 1024]
        d = torch.cdist(form(images[rows]), train)
        out[rows] = d.topk(k, largest=False, dim=1).values[:, -1].double().numpy()
        release_pages()  # a cached test set's pages read so far leave the resident set
    return out


def measured_positions(correct: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every misclassified position and up to 2,000 correctly classified ones (seeded)."""
    ok = np.flatnonzero(correct)
    if len(ok) > PIXEL_REFERENCE:
        ok = np.sort(np.random.default_rng(seed).choice(ok, PIXEL_REFERENCE, replace=False))
    return np.sort(np.concatenate([np.flatnonzero(~correct), ok]))


#: Floor (percent) of a witness's tail share in :func:`combined`: an image beyond every
#: reference image counts as if 0.1% of them were farther, so one witness cannot reach infinity.
TAIL_FLOOR = 0.1


def combined(percentiles: list[np.ndarray], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fisher's combination of the witnesses' tails, and its percentile among the correctly
    classified images that have every witness; both (N,), NaN where any witness is missing.

    Each witness's percentile ``p`` (0-100) leaves a tail share ``100 - p`` (floored at
    :data:`TAIL_FLOOR`); the statistic is the mean of ``-log(tail)`` over the witnesses, as
    in Fisher's method for independent p-values. Unlike the mean of the percentiles, two
    witnesses deep in their tails (a photograph far in shape and in feature space) outweigh
    one that is merely typical, while one extreme witness alone still moves the statistic
    less than several high ones."""
    tails = np.maximum(100.0 - np.stack(percentiles), TAIL_FLOOR)
    stat = -np.mean(np.log(tails), axis=0)
    return stat, percentile_among(stat, stat[correct])


#: Percentile (0-100) of the runner-up probabilities of correctly classified images that a
#: label error's given label must stay below (see :func:`runner_up_typical`).
RUNNER_UP_PERCENTILE = 75.0


def runner_up_typical(
    probs: np.ndarray, correct: np.ndarray, percentile: float = RUNNER_UP_PERCENTILE
) -> float | None:
    """The ``percentile`` (0-100; default :data:`RUNNER_UP_PERCENTILE`) of the probabilities
    correctly classified images give their second most likely class; None without any."""
    if probs.shape[1] < 2 or not correct.any():
        return None
    second = np.sort(probs[correct], axis=1)[:, -2]
    return float(np.percentile(second, percentile))
