"""The cause of a failure: a documented vocabulary and rules with a stated precedence.

Each rule reads one failure's evidence row (column name -> value; ``None`` or NaN where a
probe did not measure it) and the run's thresholds. The first rule that holds, in the order
of :data:`RULES`, names the cause; the row keeps all its evidence. The order puts the most
specific, physically measured evidence first: a shortcut region, an image of no class or a
damaged image explain why a model is confidently wrong about an image that may also look
mislabeled to confident learning.

Out of distribution comes before image quality: an image of no class often has properties
outside the normal range too (a photograph is flatter, a texture sharper). A novel image is
left to image quality only where it is flagged for its quality and its coarse shape (its
7x7 standardized layout, see :mod:`stresslab.diagnosis.novelty`) is one the training images
have: damage such as darkening, flattening or blur keeps the layout of an image of a class.
Overturning the novelty verdict takes a plainly typical shape, within the central 90% of the
correctly classified images' shape distances, not merely one short of the extreme tail: a
blurry image of no class (a small photograph enlarged) is flagged for its sharpness too,
and its coarse shape is often unusual without being extreme.

Label errors need three witnesses where they were measured: confident learning's flag, no
training neighbour with the given label, and the model giving the label less than three in
four correctly classified images give their runner-up class (on faults planted in Fashion-MNIST,
confident learning alone also flags many of a weaker model's ordinary errors, which keep
their true class as a close second). Out of distribution needs several witnesses (energy,
feature-space, pixel-space and coarse-shape distance), combined by Fisher's method on their
tails (see :mod:`stresslab.diagnosis.novelty`), in the tail, since each score alone also
ranks many ordinary, less confident errors there.

Thresholds come from the data: image-quality bounds, the OOD cut and the given-label cut
come from the correctly classified test images (see :mod:`stresslab.diagnosis.evidence`),
label issues are confident learning's own per-class thresholds, near-duplicates use the
representation probe's own similarity threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Thresholds:
    """The cut-offs the rules use.

    ``ood_percentile``: an image whose OOD score is above this percentile (0-100) of the
    correctly classified test images' scores is out of distribution. ``neighbour_share``:
    neighbours are split between the true and the predicted class when each holds at
    least this share of the k nearest training images (default: 2 of 10).
    ``shape_percentile``: a novel image with a quality flag is a damaged image of a class
    (not out of distribution) where its coarse-shape distance is at most this percentile
    (0-100) of the correctly classified images'. ``quality_tail``: percent of the correctly classified
    images' range left out on each side of an image property's normal range (used by the
    evidence step).
    ``given_label_below``: a label error needs the model's probability of the given label
    below this (None: not used); the diagnosis sets it to the 75th percentile of the
    probabilities correctly classified images give their runner-up class.
    """

    ood_percentile: float = 99.0
    shape_percentile: float = 90.0
    neighbour_share: float = 0.2
    quality_tail: float = 0.5
    given_label_below: float | None = None


def _given(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _at_least(v: Any, cut: float) -> bool:
    return _given(v) and float(v or 0.0) >= cut


def is_shortcut(row: Row, th: Thresholds) -> bool:
    """A proven shortcut region of the predicted class is present in the image."""
    return row.get("shortcut_present") is True


def _novel(row: Row, th: Thresholds) -> bool:
    """The novelty (Fisher's combination of the OOD witnesses' tails: energy, feature-space,
    pixel-space and coarse-shape kNN distance, those measured) is above ``ood_percentile`` of the correctly
    classified images' novelty; where no novelty was formed, the OOD score's percentile."""
    p = row.get("novelty_percentile")
    if not _given(p):
        p = row.get("ood_percentile")
    return _given(p) and float(p or 0.0) > th.ood_percentile


def _familiar_shape(row: Row, th: Thresholds) -> bool:
    """The coarse-shape distance was measured and is within ``shape_percentile`` of the
    correctly classified images' (the image keeps a layout the training images have)."""
    p = row.get("shape_distance_percentile")
    return _given(p) and float(p or 0.0) <= th.shape_percentile


def is_out_of_distribution(row: Row, th: Thresholds) -> bool:
    """Novel (see :func:`_novel`), unless the image is flagged for its quality and keeps a
    familiar coarse shape (then it is a damaged image of a class)."""
    return _novel(row, th) and not (bool(row.get("quality_flags")) and _familiar_shape(row, th))


def is_image_quality(row: Row, th: Thresholds) -> bool:
    """Some image property lies outside the correctly classified images' range."""
    return bool(row.get("quality_flags"))


def is_label_error(row: Row, th: Thresholds) -> bool:
    """Confident learning flagged the test label as probably wrong; where neighbours were
    measured, none of the k nearest training images carries that label (an image whose
    neighbours include its label is a look-alike, not a mislabeled one); and where the cut is
    set, the model gives the label less than ``given_label_below`` (less than it typically
    gives the runner-up class of an image it gets right: not even a close second)."""
    share = row.get("knn_share_true")
    if row.get("label_issue") is not True or (_given(share) and float(share or 0.0) > 0.0):
        return False
    given = row.get("given_label_probability")
    cut = th.given_label_below
    return cut is None or not _given(given) or float(given or 0.0) < cut


def is_ambiguous(row: Row, th: Thresholds) -> bool:
    """Look-alike classes: the nearest training images are split between the true and the
    predicted class, or a training near-duplicate carries the predicted label."""
    t, q = row.get("knn_share_true"), row.get("knn_share_pred")
    split = _at_least(t, th.neighbour_share) and _at_least(q, th.neighbour_share)
    dup = _given(row.get("duplicate_label")) and row.get("duplicate_label") == row.get("predicted")
    return bool(split or dup)


def is_model_error(row: Row, th: Thresholds) -> bool:
    """None of the above: the model's own mistake."""
    return True


RULES: tuple[tuple[str, Callable[[Row, Thresholds], bool]], ...] = (
    ("shortcut", is_shortcut),
    ("out_of_distribution", is_out_of_distribution),
    ("image_quality", is_image_quality),
    ("label_error", is_label_error),
    ("ambiguous", is_ambiguous),
    ("model_error", is_model_error),
)

#: The cause vocabulary, in precedence order.
CAUSES: tuple[str, ...] = tuple(name for name, _ in RULES)

#: What each cause means and what to try, for the report.
MEANING: dict[str, tuple[str, str]] = {
    "shortcut": (
        "a region the model is proven to rely on for the predicted class is in the image",
        "train with random erasing or CutMix so no one region decides the class",
    ),
    "image_quality": (
        "the image is darker, flatter, blurrier, noisier, blockier or more covered by a flat "
        "patch than any the model gets right",
        "augment with the matching photometric changes, or screen such images at input",
    ),
    "out_of_distribution": (
        "the image is farther from the training data than almost every correctly classified one",
        "add such images to training or reject them with an OOD score threshold",
    ),
    "label_error": (
        "the test label itself is probably wrong (confident learning)",
        "clean the labels; train without the flagged training labels or with label smoothing",
    ),
    "ambiguous": (
        "look-alike classes: the nearest training images carry both labels",
        "train longer, use a wider model or mixup; or merge the classes",
    ),
    "model_error": (
        "none of the evidence explains it: the model's own mistake",
        "more data or capacity for these classes; look at the gallery",
    ),
}


def decide(row: Row, th: Thresholds) -> str:
    """The cause of one failure: the first rule of :data:`RULES` that holds."""
    for name, rule in RULES:
        if rule(row, th):
            return name
    return "model_error"  # pragma: no cover - the last rule always holds
