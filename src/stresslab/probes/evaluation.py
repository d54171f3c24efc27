"""The ``evaluation`` probe: accuracy, per-class P/R/F1, confusions, learning curves."""

from __future__ import annotations

import math

import numpy as np
import torch.nn.functional as F
from scipy.stats import binomtest
from sklearn.metrics import precision_recall_fscore_support

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
        k = len(names)
        y, yhat = p.labels.numpy(), p.preds.numpy()
        res = ProbeResult()
        if len(y) == 0:
            res.warnings.append("the test set is empty; nothing was evaluated")
            return res

        cm = confusion_counts(p.labels, p.preds, k)
        support = cm.sum(axis=1)
        cm_norm = row_normalized(cm)
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, yhat, labels=list(range(k)), average=None, zero_division=0
        )
        present = support > 0
        acc = float((y == yhat).mean())
        test_loss = float(F.cross_entropy(p.logits, p.labels))
        class_acc = np.where(present, np.diag(cm) / np.maximum(support, 1), 0.0)

        res.metrics.update(
            accuracy=acc,
            error_rate=1.0 - acc,
            macro_precision=float(prec[present].mean()),
            macro_recall=float(rec[present].mean()),
            macro_f1=float(f1[present].mean()),
            test_loss=test_loss,
            n_test=len(y),
            worst_class_accuracy=float(class_acc[present].min()),
        )
        self._chance(res, names, support, int((y == yhat).sum()), np.bincount(yhat, minlength=k))
        if (~present).any():
            missing = ", ".join(names[i] for i in np.flatnonzero(~present))
            res.warnings.append(f"classes absent from the test set (left out of macro averages): {missing}")

        order = np.argsort(class_acc + np.where(present, 0, 2))
        res.tables.append(
            Table(
                "Per-class metrics (weakest first)",
                ["class", "support", "accuracy", "precision", "recall", "F1"],
                [
                    [
                        names[i],
                        int(support[i]),
                        float(class_acc[i]),
                        float(prec[i]),
                        float(rec[i]),
                        float(f1[i]),
                    ]
                    for i in order
                ],
            )
        )
        pairs = top_confused_pairs(cm, self.top_pairs)
        res.tables.append(
            Table(
                "Most confused pairs",
                ["true", "predicted", "count", "share of true class"],
                [[names[t], names[q], int(cm[t, q]), float(cm_norm[t, q])] for t, q in pairs],
            )
        )
        res.data.update(
            class_names=names,
            confusion_matrix=cm.tolist(),
            confusion_matrix_normalized=cm_norm.tolist(),
            per_class={
                names[i]: {
                    "support": int(support[i]),
                    "accuracy": float(class_acc[i]),
                    "precision": float(prec[i]),
                    "recall": float(rec[i]),
                    "f1": float(f1[i]),
                }
                for i in range(k)
            },
            confused_pairs=[{"true": t, "pred": q, "count": int(cm[t, q])} for t, q in pairs],
        )
        if k > MANY_CLASSES:
            clustered = cluster_order(cm)
            res.data["confusion_cluster_order"] = clustered
            res.figures["confusion_clustered"] = clustered_matrix_figure(
                cm_norm, names, clustered, f"Confusion matrix, {k} classes clustered (row-normalized)"
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
                cm_norm, names, "Confusion matrix (row-normalized)", fmt=".2f"
            )
            res.captions["confusion"] = (
                "Row i, column j: share of class i's test images predicted as class j."
            )

        weakest = [names[i] for i in order[:3] if present[i]]
        res.summary.append(
            f"Test accuracy {acc:.2%} (macro F1 {res.metrics['macro_f1']:.3f}) on {len(y)} images; "
            f"weakest classes: {', '.join(f'{n} ({class_acc[names.index(n)]:.1%})' for n in weakest)}."
        )
        if pairs:
            t, q = pairs[0]
            res.summary.append(
                f"Top confusion: {names[t]} predicted as {names[q]} ({int(cm[t, q])} times, "
                f"{cm_norm[t, q]:.1%} of {names[t]})."
            )
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
        h = ctx.history
        if not h:
            res.summary.append("No training history (a loaded checkpoint without one): no curves.")
            return
        epochs = [int(r["epoch"]) for r in h]
        gap = [float(r["train_acc"]) - float(r.get("val_acc", float("nan"))) for r in h]
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
        res.tables.append(
            Table(
                "Training history",
                [
                    "epoch",
                    "train loss",
                    "train acc",
                    "val loss",
                    "val acc",
                    "gap",
                    "lr",
                    "seconds",
                    "images/s",
                ],
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
        )
        final_gap = gap[-1]
        res.metrics["final_gap"] = final_gap if math.isfinite(final_gap) else 0.0
        res.metrics["epochs_trained"] = len(h)
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
