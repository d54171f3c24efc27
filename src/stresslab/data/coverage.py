"""Class coverage of a split: classes a model cannot learn, or can barely learn, from its training set.

A test class that never occurs in training is misclassified by construction, and a class
with a handful of training images gives an accuracy that says little; both used to pass
without a word (a run on 10 training images reported 0%). :func:`coverage_warnings` puts
each in a sentence for ``Split.warnings``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: A class with fewer training images than this (after the validation split and subsets) is
#: flagged: too few to learn it, and its test accuracy is mostly noise.
MIN_TRAIN_IMAGES_PER_CLASS = 5
#: At most this many classes are named in one warning; the rest are counted.
MAX_CLASSES_NAMED = 20


def _name_counts(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_CLASSES_NAMED])
    if len(items) > MAX_CLASSES_NAMED:
        shown += f", and {len(items) - MAX_CLASSES_NAMED} more"
    return shown


def coverage_warnings(train_y: Tensor, test_y: Tensor, class_names: Sequence[str], dataset: str) -> list[str]:
    """Sentences naming test classes absent from training and classes with few training images.

    Args:
        train_y: int64 (N,) labels of the training images the model learns from.
        test_y: int64 (M,) labels of the test images it is measured on.
        class_names: the K class names; labels lie in 0..K-1.
        dataset: the dataset's name, for the message.

    Returns:
        Zero, one or two warnings: classes with test images but no training image (with
        their test counts), and classes with fewer than :data:`MIN_TRAIN_IMAGES_PER_CLASS`
        training images (with their training counts; classes with neither training nor
        test images count here, with 0).
    """
    k = len(class_names)
    train_n = torch.bincount(train_y.long(), minlength=k).tolist()
    test_n = torch.bincount(test_y.long(), minlength=k).tolist()
    unseen = [c for c in range(k) if train_n[c] == 0 and test_n[c] > 0]
    few = [c for c in range(k) if train_n[c] < MIN_TRAIN_IMAGES_PER_CLASS and c not in unseen]
    out: list[str] = []
    if unseen:
        out.append(
            f"{dataset}: {len(unseen)} class(es) occur in the test set but never in the training set: "
            + _name_counts([f"{class_names[c]} ({test_n[c]} test images)" for c in unseen])
            + ". The model cannot learn them, so these test images count as errors in every accuracy."
        )
    if few:
        out.append(
            f"{dataset}: {len(few)} class(es) have fewer than {MIN_TRAIN_IMAGES_PER_CLASS} training images "
            "(after the validation split and subsets): "
            + _name_counts([f"{class_names[c]} ({train_n[c]})" for c in few])
            + ". The model can barely learn them; their accuracy says little."
        )
    return out
