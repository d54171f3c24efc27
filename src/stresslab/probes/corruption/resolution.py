"""Resolution as a cause: the corruption probe's sample at lower resolution.

Each factor f downsamples the sampled test images f times (area averaging) and upsamples
them back (bilinear; :func:`~stresslab.corruptions.resolution.lower_resolution`). Scored:
accuracy overall and per class, and how the pairs the model confuses most on the clean
images move: if low resolution drives those confusions, their share grows as f grows and
the errors it adds land in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.corruptions.resolution import lower_resolution
from stresslab.data.base import to_float
from stresslab.metrics.confusion import confusion_counts, row_normalized, top_confused_pairs
from stresslab.probes.base import ProbeContext
from stresslab.probes.corruption.compute import mean_or_nan

#: Clean confused pairs followed across factors.
N_PAIRS = 5


def predictions(ctx: ProbeContext, images: Tensor, factors: Sequence[int]) -> Tensor:
    """Predicted classes (F, N) of uint8 ``images`` (N, C, H, W) at each factor; -1 where a
    logit is not finite (counted wrong)."""
    out = []
    bs = ctx.forward_batch
    tracker: Any = ctx.track("resolution", len(factors))
    with tracker as advance:
        for f in factors:
            preds = []
            for i in range(0, len(images), bs):
                logits = (
                    ctx.model(lower_resolution(to_float(images[i : i + bs]).to(ctx.device), f)).float().cpu()
                )
                preds.append(torch.where(torch.isfinite(logits).all(1), logits.argmax(1), -1))
            out.append(torch.cat(preds) if preds else torch.empty(0, dtype=torch.long))
            advance(1)
    return torch.stack(out)


@dataclass(frozen=True)
class PairShift:
    """A pair (true, predicted) the model confuses on the clean sample: the share of the true
    class's images predicted as the other, clean and at each factor (F,)."""

    true: int
    pred: int
    clean: float
    shares: tuple[float, ...]


@dataclass(frozen=True)
class ResolutionScores:
    """The sample (N images) at each factor (F).

    ``labels`` (N,); ``clean_pred`` (N,) and ``preds`` (F, N) predicted classes (-1: non-
    finite logits). ``pairs``: the clean top confused pairs followed across factors.
    ``new_errors[f]``: images right on the clean sample and wrong at factor f;
    ``new_in_pairs[f]``: how many of them are predicted as one of the pairs' (true,
    predicted) confusions. ``gained[f]`` / ``lost[f]``: images that fall into one of those
    confusions at factor f but not clean / clean but not at f (McNemar's discordant pairs).
    """

    factors: tuple[int, ...]
    class_names: tuple[str, ...]
    labels: Tensor
    clean_pred: Tensor
    preds: Tensor
    pairs: tuple[PairShift, ...]
    new_errors: tuple[int, ...]
    new_in_pairs: tuple[int, ...]
    gained: tuple[int, ...]
    lost: tuple[int, ...]

    def deepening_p(self, j: int) -> float | None:
        """One-sided exact McNemar p-value that factor ``self.factors[j]`` puts more images
        into the clean top confusions than it takes out of them (binomial test of
        ``gained`` among ``gained + lost`` at 1/2); ``None`` without discordant images."""
        from scipy.stats import binomtest

        n = self.gained[j] + self.lost[j]
        return float(binomtest(self.gained[j], n, 0.5, alternative="greater").pvalue) if n else None

    @property
    def clean_accuracy(self) -> float:
        return mean_or_nan((self.clean_pred == self.labels).double())

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy (F,) at each factor."""
        return np.array([mean_or_nan((p == self.labels).double()) for p in self.preds])

    def class_accuracy(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Classes with images, their clean accuracy (C,) and accuracy per factor (C, F)."""
        classes = [int(c) for c in torch.unique(self.labels)]
        clean = np.array(
            [mean_or_nan((self.clean_pred == self.labels)[self.labels == c].double()) for c in classes]
        )
        per = np.array(
            [
                [mean_or_nan((p == self.labels)[self.labels == c].double()) for p in self.preds]
                for c in classes
            ]
        ).reshape(len(classes), len(self.factors))
        return classes, clean, per


def _share(labels: Tensor, preds: Tensor, true: int, pred: int) -> float:
    mine = labels == true
    return mean_or_nan((preds[mine] == pred).double())


def score(
    labels: Tensor, clean_pred: Tensor, preds: Tensor, factors: Sequence[int], class_names: Sequence[str]
) -> ResolutionScores:
    """Scores from the predictions of the clean sample (N,) and of each factor (F, N)."""
    k = len(class_names)
    ok = clean_pred >= 0
    cm = confusion_counts(labels[ok], clean_pred[ok], k)
    norm = row_normalized(cm)
    top = top_confused_pairs(cm, N_PAIRS)
    pairs = tuple(
        PairShift(t, q, float(norm[t, q]), tuple(_share(labels, p, t, q) for p in preds)) for t, q in top
    )
    confusions = {(t, q) for t, q in top}

    def confused(p: Tensor) -> Tensor:
        return torch.tensor(
            [(int(t), int(q)) in confusions for t, q in zip(labels, p, strict=True)], dtype=torch.bool
        )

    right, was = clean_pred == labels, confused(clean_pred)
    new_errors, new_in_pairs, gained, lost = [], [], [], []
    for p in preds:
        new, now = right & (p != labels), confused(p)
        new_errors.append(int(new.sum()))
        new_in_pairs.append(int((new & now).sum()))
        gained.append(int((now & ~was).sum()))
        lost.append(int((was & ~now).sum()))
    return ResolutionScores(
        tuple(factors),
        tuple(class_names),
        labels,
        clean_pred,
        preds,
        pairs,
        tuple(new_errors),
        tuple(new_in_pairs),
        tuple(gained),
        tuple(lost),
    )
