"""The diagnosis's records: the evidence columns it can fill (name, type, source probe,
meaning), what the run holds about its test images (:class:`TestSet`) and the evidence
gathered so far (:class:`Evidence`). The adapters of :mod:`stresslab.diagnosis.evidence`
fill the columns declared here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stresslab.data.indexed import IndexedArray


@dataclass(frozen=True)
class Column:
    """One evidence column: its ``name``, value ``kind`` (int, float, bool, str), the
    ``source`` probe ("predictions" or "images" for what the run itself holds) and what it means."""

    name: str
    kind: str
    source: str
    text: str


COLUMNS: tuple[Column, ...] = (
    Column(
        "label_issue",
        "bool",
        "label_issues",
        "the test label was flagged as probably wrong (confident learning)",
    ),
    Column("label_quality", "float", "label_issues", "label quality score of a flagged label, in [0, 1]"),
    Column("suggested_label", "str", "label_issues", "the label confident learning suggests instead"),
    Column(
        "knn_share_true",
        "float",
        "representation",
        "share of the k nearest training images with the true label",
    ),
    Column(
        "knn_share_pred",
        "float",
        "representation",
        "share of the k nearest training images with the predicted label",
    ),
    Column(
        "nearest_train_index",
        "int",
        "representation",
        "official training index of the nearest training image",
    ),
    Column(
        "duplicate_label",
        "str",
        "representation",
        "label of a training near-duplicate whose label differs from the true one",
    ),
    Column(
        "given_label_probability",
        "float",
        "predictions",
        "the model's probability of the given (test) label, in [0, 1]",
    ),
    Column("ood_score", "float", "ood", "out-of-distribution score (energy where recorded)"),
    Column(
        "ood_percentile",
        "float",
        "ood",
        "percentile of the OOD score among correctly classified test images, 0-100",
    ),
    Column(
        "feature_distance_percentile",
        "float",
        "ood",
        "percentile of the feature-space kNN distance among correctly classified test images",
    ),
    Column(
        "pixel_distance_percentile",
        "float",
        "images",
        "percentile of the pixel-space kNN distance to training images among correct test images",
    ),
    Column(
        "shape_distance_percentile",
        "float",
        "images",
        "percentile of the coarse-shape kNN distance to training images among correct test images",
    ),
    Column(
        "novelty_percentile",
        "float",
        "ood",
        "percentile of Fisher's combination of the OOD witnesses' tails among correct test images",
    ),
    Column(
        "shortcut_present", "bool", "shortcut", "a proven shortcut region of the predicted class is present"
    ),
    Column(
        "corruption_flip_severity",
        "int",
        "corruption",
        "smallest corruption severity (1-5) that changes the prediction",
    ),
    Column("corruption_flip", "str", "corruption", "the corruption that changes it at that severity"),
    Column(
        "attack_flip_epsilon",
        "float",
        "adversarial",
        "smallest attack epsilon (pixel units, L-inf where run) that changes the prediction",
    ),
    Column("attack_flip", "str", "adversarial", "the attack that changes it at that epsilon"),
    Column(
        "background_attribution",
        "float",
        "explain",
        "share of the attribution on plain background, in [0, 1]",
    ),
    Column("brightness", "float", "images", "mean pixel value, in [0, 1]"),
    Column("contrast", "float", "images", "standard deviation of the pixel values, in [0, 1]"),
    Column("sharpness", "float", "images", "mean absolute Laplacian, in [0, 4] (low: blurred)"),
    Column(
        "blockiness",
        "float",
        "images",
        "excess share of the gradient on the best block grid, in [0, 1) (high: made of blocks)",
    ),
    Column(
        "flat_area",
        "float",
        "images",
        "share of pixels in constant 3x3 patches off the plain background, in [0, 1]",
    ),
    Column("object_area", "float", "images", "share of pixels off the plain background, in [0, 1]"),
    Column(
        "quality_flags", "str", "images", "properties outside the range of the correctly classified images"
    ),
    Column("audit_flags", "str", "data_audit", "image-quality issues data_audit flagged (its test sample)"),
)

BY_NAME = {c.name: c for c in COLUMNS}


@dataclass
class TestSet:
    """What the run holds about its test images: ``probs`` (N, K) softmax probabilities,
    ``labels`` and ``index`` (N,) int (official test indices), ``class_names`` (K),
    optionally ``images`` uint8 (N, C, H, W), ``embeddings`` (N, D), the training images
    ``train_images`` uint8 (M, C, H, W) (an array, or a view of the image cache that copies
    the rows asked for) with ``train_labels`` (M,), and the plain
    ``background`` value in [0, 1] where the dataset has one."""

    __test__ = False  # not a pytest class

    probs: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    class_names: tuple[str, ...]
    images: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    train_images: np.ndarray | IndexedArray | None = None
    train_labels: np.ndarray | None = None
    background: float | None = None

    @property
    def preds(self) -> np.ndarray:
        return np.asarray(self.probs.argmax(axis=1), dtype=np.int64)

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.preds == self.labels)

    def positions(self) -> dict[int, int]:
        """Official test index -> position."""
        return {int(i): p for p, i in enumerate(self.index.tolist())}


@dataclass
class Evidence:
    """Evidence columns (name -> (N,) object array, ``None`` where empty), the thresholds
    measured on the way (name -> value), per column left empty why, and per column filled
    from a choice of sources which one (``notes``)."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # column -> where its values came from

    def column(self, name: str, n: int) -> np.ndarray:
        if name not in self.columns:
            self.columns[name] = np.full(n, None, dtype=object)
        return self.columns[name]
