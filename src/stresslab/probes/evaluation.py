"""The ``evaluation`` probe: accuracy, per-class P/R/F1, confusions, learning curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F
from scipy.stats import binomtest
from sklearn.metrics import precision_recall_fscore_support
from torch import Tensor

from stresslab.metrics.confusion import cluster_order, confusion_counts, row_normalized, top_confused_pairs
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.probes.evaluation_superclass import superclass_section
from stresslab.report.figures import clustered_matrix_figure, line_figure, matrix_figure

#: Above this many classes the confusion matrix is drawn clustered and large, every class labelled.
MANY_CLASSES = 30


def overfitting_onset(history: list[dict[str, float]], tolerance: float = 0.02) -> int | None:
    """The epoch with the lowest validation loss when later epochs rise above it.

    Returns ``None`` when validation loss is still at (or within ``tolerance``, relative,
    of) its minimum at the last epoch, i.e. no sign of overfitting yet.
    """
    vals = [(int(h["epoch"]), float(h["val_loss"])) for h in history if h.get("val_loss") is not None]
    vals = [(e, v) for e, v in vals if math.isfinite(v)]
    if len(vals) < 2:
        return None
    best_epoch, best = min(vals, key=lambda ev: ev[1])
    last = vals[-1][1]
    if best_epoch == vals[-1][0] or last <= best * (1.0 + tolerance):
        return None
    return best_epoch


@register_probe("evaluation")
class EvaluationProbe(Probe):
    """Test-set accuracy, macro and per-class precision/recall/F1, the confusion matrix
    (counts and row-normalized; above ``MANY_CLASSES`` classes drawn clustered and large),
    the most confused pairs, test loss, the superclass view where the dataset has
    superclasses (``evaluation_superclass``), and the training curves with the
    generalization gap per epoch.
    """

    order = 10
    headlines = (Headline("accuracy", "test accuracy", percent=True), Headline("macro_f1", "macro F1"))

    def __init__(
        self, *, top_pairs: int = 10, overfit_tolerance: float = 0.02, chance_alpha: float = 0.05
    ) -> None:
        if top_pairs < 1:
            raise ValueError(f"top_pairs must be >= 1, got {top_pairs}")
        if not 0.0 < chance_alpha < 1.0:
            raise ValueError(f"chance_alpha must be in (0, 1), got {chance_alpha}")
        self.top_pairs = top_pairs
        self.overfit_tolerance = overfit_tolerance
        self.chance_alpha = chance_alpha

    def run(self, ctx: ProbeContext) -> ProbeResult:
        p = ctx.predictions
        names = list(ctx.info.class_names)
        res = ProbeResult()
        if len(p.labels) == 0:
            res.warnings.append("the test set is empty; nothing was evaluated")
            return res

        scores = _class_scores(p.labels, p.preds, len(names))
        res.metrics.update(_overall_metrics(scores, float(F.cross_entropy(p.logits, p.labels))))
        self._chance(res, names, scores.support, scores.n_correct, scores.predicted)
        if (~scores.present).any():
            missing = ", ".join(names[i] for i in np.flatnonzero(~scores.present))
            res.warnings.append(f"classes absent from the test set (left out of macro averages): {missing}")

        pairs = top_confused_pairs(scores.cm, self.top_pairs)
        res.tables.append(_per_class_table(names, scores))
        res.tables.append(_pairs_table(names, scores, pairs))
        res.data.update(_class_data(names, scores, pairs))
        _confusion_figure(res, names, scores)
        res.summary.extend(_summary(names, scores, pairs, res.metrics["macro_f1"]))
        superclass_section(res, ctx)
        self._curves(ctx, res)
        return res

    def _chance(
        self, res: ProbeResult, names: list[str], support: np.ndarray, correct: int, predicted: np.ndarray
    ) -> None:
        """Is accuracy significantly above always answering the test set's largest class?

        One-sided exact binomial test of ``correct`` of ``n`` against the majority-class
        rate (at least 1/K; the best accuracy a model that ignores its input can reach):
        ``above_chance_p`` is P(X >= correct) for X ~ Binomial(n, majority rate).
        """
        n = int(support.sum())
        majority = float(support.max()) / n
        p_value = float(binomtest(correct, n, majority, alternative="greater").pvalue)
        res.metrics["majority_rate"] = majority
        res.metrics["above_chance_p"] = p_value
        if p_value < self.chance_alpha:
            return
        top = int(np.argmax(predicted))
        res.warnings.append(
            f"test accuracy {correct / n:.2%} is not significantly above the majority-class rate "
            f"{majority:.2%} (one-sided binomial test, p = {p_value:.3g} >= {self.chance_alpha:g}): "
            f"the model does no better than ignoring its input. It predicts {names[top]!r} for "
            f"{predicted[top] / n:.0%} of test images."
        )

    def _curves(self, ctx: ProbeContext, res: ProbeResult) -> None:
        """Training curves, the history table, the final gap and the overfitting verdict."""
        h = ctx.history
        if not h:
            res.summary.append("No training history (a loaded checkpoint without one): no curves.")
            return
        epochs = [int(r["epoch"]) for r in h]
        gap = [float(r["train_acc"]) - float(r.get("val_acc", float("nan"))) for r in h]
        _curve_figures(res, epochs, h, gap)
        res.tables.append(_history_table(h, gap))
        final_gap = gap[-1]
        res.metrics["final_gap"] = final_gap if math.isfinite(final_gap) else 0.0
        res.metrics["epochs_trained"] = len(h)
        self._verdict(res, epochs, h, final_gap)

    def _verdict(
        self, res: ProbeResult, epochs: list[int], h: list[dict[str, float]], final_gap: float
    ) -> None:
        """The epoch of the lowest validation loss and whether the model overfits after it
        (``overfitting_onset`` with this probe's tolerance); ``final_gap`` is a fraction."""
        finite = [(e, r["val_loss"]) for e, r in zip(epochs, h, strict=True) if math.isfinite(r["val_loss"])]
        if not finite:
            res.summary.append(
                "No validation set: the overfitting verdict needs one (data.val_fraction > 0)."
            )
            return
        best_epoch = min(finite, key=lambda t: t[1])[0]
        res.metrics["best_val_loss_epoch"] = best_epoch
        onset = overfitting_onset(h, self.overfit_tolerance)
        res.data["overfitting_onset_epoch"] = onset
        if onset is None:
            res.metrics["overfitting"] = 0
            res.summary.append(
                f"No overfitting yet: validation loss is lowest at epoch {best_epoch} of {len(h)}; "
                f"final train-validation accuracy gap {final_gap:.1%}."
            )
        else:
            res.metrics["overfitting"] = 1
            res.summary.append(
                f"Overfitting from epoch {onset}: validation loss is lowest there and rises afterwards "
                f"(final train-validation accuracy gap {final_gap:.1%})."
            )


@dataclass(frozen=True)
class _ClassScores:
    """The test set's numbers per class, K classes.

    ``cm`` (K, K) int counts, row = true class; ``cm_norm`` its rows as shares in [0, 1];
    ``support``, ``predicted`` (K,) images per true and per predicted class; ``precision``,
    ``recall``, ``f1``, ``accuracy`` (K,) in [0, 1] (0 for a class absent from the test set);
    ``present`` (K,) bool, the classes with at least one test image; ``n_correct`` and
    ``n`` the right answers and the images.
    """

    cm: np.ndarray
    cm_norm: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    accuracy: np.ndarray
    present: np.ndarray
    n_correct: int
    n: int

    @property
    def weakest_first(self) -> np.ndarray:
        """Class indices (K,) by accuracy, lowest first; absent classes last."""
        return np.argsort(self.accuracy + np.where(self.present, 0, 2))


def _class_scores(labels: Tensor, preds: Tensor, k: int) -> _ClassScores:
    """Per-class scores of ``preds`` against ``labels`` (int tensors (N,), N >= 1, values in
    0 .. k - 1); precision, recall and F1 are scikit-learn's (zero_division=0)."""
    y, yhat = labels.numpy(), preds.numpy()
    cm = confusion_counts(labels, preds, k)
    support = cm.sum(axis=1)
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, yhat, labels=list(range(k)), average=None, zero_division=0
    )
    present = support > 0
    return _ClassScores(
        cm=cm,
        cm_norm=row_normalized(cm),
        support=support,
        predicted=np.bincount(yhat, minlength=k),
        precision=prec,
        recall=rec,
        f1=f1,
        accuracy=np.where(present, np.diag(cm) / np.maximum(support, 1), 0.0),
        present=present,
        n_correct=int((y == yhat).sum()),
        n=len(y),
    )


def _overall_metrics(s: _ClassScores, test_loss: float) -> dict[str, float]:
    """Accuracy, error rate, macro P/R/F1 over the present classes, the mean test
    cross-entropy ``test_loss`` (nats), the test-set size and the worst class's accuracy."""
    acc = s.n_correct / s.n
    return dict(
        accuracy=acc,
        error_rate=1.0 - acc,
        macro_precision=float(s.precision[s.present].mean()),
        macro_recall=float(s.recall[s.present].mean()),
        macro_f1=float(s.f1[s.present].mean()),
        test_loss=test_loss,
        n_test=s.n,
        worst_class_accuracy=float(s.accuracy[s.present].min()),
    )


def _per_class_table(names: list[str], s: _ClassScores) -> Table:
    """One row per class, weakest first: support, accuracy, precision, recall, F1. A class
    absent from the test set (a test folder with fewer classes than the model) is marked
    absent, its accuracy, recall and F1 empty (undefined); its precision stays: the model
    may still predict it."""

    def row(i: int) -> list[Any]:
        present = bool(s.present[i])
        measured: list[float | None] = [
            float(s.accuracy[i]),
            float(s.precision[i]),
            float(s.recall[i]),
            float(s.f1[i]),
        ]
        if not present:
            measured = [None, measured[1] if s.predicted[i] else None, None, None]
        return [names[i] if present else f"{names[i]} (absent)", int(s.support[i]), *measured]

    return Table(
        "Per-class metrics (weakest first)",
        ["class", "support", "accuracy", "precision", "recall", "F1"],
        [row(i) for i in s.weakest_first],
    )


def _pairs_table(names: list[str], s: _ClassScores, pairs: list[tuple[int, int]]) -> Table:
    """The most confused (true, predicted) pairs with their count and share of the true class."""
    return Table(
        "Most confused pairs",
        ["true", "predicted", "count", "share of true class"],
        [[names[t], names[q], int(s.cm[t, q]), float(s.cm_norm[t, q])] for t, q in pairs],
    )


def _class_data(names: list[str], s: _ClassScores, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """The confusion matrices, the per-class scores by name and the confused pairs, for the JSON."""
    return dict(
        class_names=names,
        confusion_matrix=s.cm.tolist(),
        confusion_matrix_normalized=s.cm_norm.tolist(),
        per_class={
            names[i]: {
                "support": int(s.support[i]),
                "accuracy": float(s.accuracy[i]),
                "precision": float(s.precision[i]),
                "recall": float(s.recall[i]),
                "f1": float(s.f1[i]),
            }
            for i in range(len(names))
        },
        confused_pairs=[{"true": t, "pred": q, "count": int(s.cm[t, q])} for t, q in pairs],
    )


def _confusion_figure(res: ProbeResult, names: list[str], s: _ClassScores) -> None:
    """The row-normalized confusion matrix; above ``MANY_CLASSES`` classes clustered and large."""
    k = len(names)
    if k > MANY_CLASSES:
        clustered = cluster_order(s.cm)
        res.data["confusion_cluster_order"] = clustered
        res.figures["confusion_clustered"] = clustered_matrix_figure(
            s.cm_norm, names, clustered, f"Confusion matrix, {k} classes clustered (row-normalized)"
        )
        res.captions["confusion_clustered"] = (
            "Row i, column j: share of class i's test images predicted as class j, with classes "
            "reordered by hierarchical clustering of their confusion rows, so classes that take "
            "each other's images sit together; the diagonal is blank (each row's accuracy follows "
            "its label). A large image: open or zoom it to read the labels. The most confused pairs "
            "are in the table."
        )
    else:
        res.figures["confusion"] = matrix_figure(
            s.cm_norm, names, "Confusion matrix (row-normalized)", fmt=".2f"
        )
        res.captions["confusion"] = "Row i, column j: share of class i's test images predicted as class j."


def _summary(names: list[str], s: _ClassScores, pairs: list[tuple[int, int]], macro_f1: float) -> list[str]:
    """The accuracy line with the three weakest present classes, and the top confusion."""
    acc = s.n_correct / s.n
    weakest = [names[i] for i in s.weakest_first[:3] if s.present[i]]
    lines = [
        f"Test accuracy {acc:.2%} (macro F1 {macro_f1:.3f}) on {s.n} images; "
        f"weakest classes: {', '.join(f'{n} ({s.accuracy[names.index(n)]:.1%})' for n in weakest)}."
    ]
    if pairs:
        t, q = pairs[0]
        lines.append(
            f"Top confusion: {names[t]} predicted as {names[q]} ({int(s.cm[t, q])} times, "
            f"{s.cm_norm[t, q]:.1%} of {names[t]})."
        )
    return lines


def _curve_figures(res: ProbeResult, epochs: list[int], h: list[dict[str, float]], gap: list[float]) -> None:
    """Loss and accuracy per epoch (train and validation) and the generalization gap."""
    res.figures["loss_curves"] = line_figure(
        epochs,
        {"train": [r["train_loss"] for r in h], "validation": [r["val_loss"] for r in h]},
        "Loss per epoch",
        "epoch",
        "cross-entropy",
    )
    res.figures["accuracy_curves"] = line_figure(
        epochs,
        {"train": [r["train_acc"] for r in h], "validation": [r["val_acc"] for r in h]},
        "Accuracy per epoch",
        "epoch",
        "accuracy",
    )
    res.figures["gap"] = line_figure(
        epochs, {"train - validation accuracy": gap}, "Generalization gap", "epoch", "accuracy gap"
    )
    res.captions["loss_curves"] = (
        "Training loss and accuracy are running means over each epoch in training mode "
        "(dropout and augmentation on)."
    )
    res.captions["gap"] = (
        "Train accuracy minus validation accuracy per epoch; a growing gap signals overfitting."
    )


def _history_table(h: list[dict[str, float]], gap: list[float]) -> Table:
    """One row per epoch of the training history, with the train - validation accuracy gap."""
    return Table(
        "Training history",
        ["epoch", "train loss", "train acc", "val loss", "val acc", "gap", "lr", "seconds", "images/s"],
        [
            [
                int(r["epoch"]),
                r["train_loss"],
                r["train_acc"],
                r["val_loss"],
                r["val_acc"],
                g,
                r["lr"],
                r["seconds"],
                r["images_per_s"],
            ]
            for r, g in zip(h, gap, strict=True)
        ],
    )
