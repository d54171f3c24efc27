"""Accuracy one level up a class hierarchy (CIFAR-100's 20 superclasses of 5 classes each).

A prediction is a class; its superclass is that class's (``coarse_of``). An error "stays
within the superclass" when the predicted class is a sibling of the true one (a maple
predicted as an oak: both ``trees``): such errors are the confusions of similar
fine-grained categories, the others are confusions across kinds of things.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stresslab.metrics.confusion import confusion_counts


def superclass_of(classes: Tensor, coarse_of: Sequence[int]) -> Tensor:
    """The superclass (N,) int64 of each class in ``classes`` (N,); -1 where it is unknown."""
    table = torch.tensor(list(coarse_of), dtype=torch.long)
    return table[classes.long().cpu()]


@dataclass(frozen=True)
class SuperclassScores:
    """Superclass-level results on N images.

    ``accuracy``: share of images whose predicted class lies in their true superclass, in
    [0, 1] (None over no images). ``within_error_share``: of the class errors, the share
    whose predicted class is in the true superclass, in [0, 1] (None without errors).
    ``chance_within_share``: that share if each error picked a wrong class uniformly at
    random (the mean over errors of (siblings of the true class) / (K - 1)), for scale.
    ``confusion``: counts (M, M), row = true superclass, column = predicted class's
    superclass; predictions of a class with unknown superclass are left out and counted in
    ``n_unknown``.
    """

    accuracy: float | None
    within_error_share: float | None
    chance_within_share: float | None
    n_errors: int
    n_within: int
    n_unknown: int
    confusion: np.ndarray


def superclass_scores(
    labels: Tensor, preds: Tensor, coarse_labels: Tensor, coarse_of: Sequence[int], num_coarse: int
) -> SuperclassScores:
    """Superclass accuracy, within-superclass error share and the superclass confusion matrix.

    ``labels`` / ``preds``: classes (N,); ``coarse_labels``: true superclasses (N,) in
    ``0 .. num_coarse - 1``; ``coarse_of``: superclass of each of the K classes (-1: unknown).
    """
    labels, preds, coarse_true = labels.long().cpu(), preds.long().cpu(), coarse_labels.long().cpu()
    coarse_pred = superclass_of(preds, coarse_of)
    same = coarse_pred == coarse_true
    wrong = preds != labels
    n, n_err = len(labels), int(wrong.sum())
    known = coarse_pred >= 0
    table = torch.tensor(list(coarse_of), dtype=torch.long)
    k = len(table)
    # Siblings of each true class: classes other than itself with its superclass.
    siblings = (table.unsqueeze(0) == coarse_true.unsqueeze(1)).sum(1) - 1
    chance = float((siblings[wrong].double() / max(k - 1, 1)).mean()) if n_err else None
    return SuperclassScores(
        accuracy=float(same.double().mean()) if n else None,
        within_error_share=float(same[wrong].double().mean()) if n_err else None,
        chance_within_share=chance,
        n_errors=n_err,
        n_within=int((same & wrong).sum()),
        n_unknown=int((~known).sum()),
        confusion=confusion_counts(coarse_true[known], coarse_pred[known], num_coarse),
    )
