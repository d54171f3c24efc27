"""The ``label_issues`` probe: is it the model or the data? Wrong labels found by confident
learning, and which of the model's test errors are probably label errors."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.failures import FailureCases
from stresslab.probes.label_issues import present
from stresslab.probes.label_issues.confident import (
    FILTER_BY,
    RANK_BY,
    LabelIssues,
    class_thresholds,
    find_issues,
)
from stresslab.probes.label_issues.cross_val import out_of_fold_probs

log = logging.getLogger(__name__)

MODES = ("holdout", "cross_val")
SETS = ("test", "train")


@register_probe("label_issues")
class LabelIssuesProbe(Probe):
    """Candidates for wrong labels, ranked by cleanlab's label quality score (``rank_by``:
    self_confidence, normalized_margin, confidence_weighted_entropy), flagged by
    ``filter_by`` (cleanlab's ``find_label_issues``), with the given and the suggested label,
    the estimated noise rate per class pair and how many test errors are probably label errors.

    Confident learning needs out-of-sample probabilities. ``mode: holdout`` uses the final
    model's validation predictions for the per-class thresholds and its test predictions for
    the search: no extra cost, test set only. ``mode: cross_val`` also trains ``folds`` models
    on folds of the training set (the run's training code and settings; ``epochs``
    overrides the epochs per fold) for out-of-fold probabilities of every training image.
    ``sets`` picks the sets searched (default: test in holdout, test and train in cross_val).
    """

    order = 25
    requires = ("failures",)
    headlines = (
        Headline("n_test_issues", "label issues (test)"),
        Headline("n_errors_likely_label_issue", "errors that are label issues"),
    )

    def __init__(
        self,
        *,
        mode: str = "holdout",
        sets: list[str] | tuple[str, ...] | None = None,
        rank_by: str = "self_confidence",
        filter_by: str = "prune_by_noise_rate",
        folds: int = 5,
        epochs: int | None = None,
        gallery_size: int = 24,
        max_rows: int = 50,
        n_pairs: int = 10,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if sets is not None and (not sets or any(s not in SETS for s in sets)):
            raise ValueError(f"sets must name some of {', '.join(SETS)}; got {sets!r}")
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}; got {rank_by!r}")
        if filter_by not in FILTER_BY:
            raise ValueError(f"filter_by must be one of {', '.join(FILTER_BY)}; got {filter_by!r}")
        if folds < 2:
            raise ValueError(f"folds must be >= 2; got {folds}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or empty; got {epochs}")
        self.mode = mode
        self.sets = tuple(sets) if sets is not None else None
        self.rank_by = rank_by
        self.filter_by = filter_by
        self.folds = folds
        self.epochs = epochs
        self.gallery_size = gallery_size
        self.max_rows = max_rows
        self.n_pairs = n_pairs

    def needs_training_data(self) -> str | None:
        """A reason in ``cross_val`` mode or when ``sets`` names ``train``; ``holdout`` mode
        searches the test set alone."""
        if self.mode == "cross_val":
            return (
                "mode cross_val trains models on folds of the training set, and there is none "
                "(mode holdout searches the test set alone)"
            )
        if self.sets is not None and "train" in self.sets:
            return "its sets include train, and there are no training images"
        return None

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        mode = self.mode
        if mode == "cross_val" and (ctx.train_config is None or ctx.model_factory is None):
            res.warnings.append(
                "label_issues: mode cross_val needs the run's training settings and model builder, "
                "which this context lacks; fell back to mode holdout (test set only)"
            )
            mode = "holdout"
        sets = self.sets or (("test", "train") if mode == "cross_val" else ("test",))
        if "train" in sets and mode == "holdout":
            res.warnings.append(
                "label_issues: training-set label issues were asked for in mode holdout and skipped: "
                "the only probabilities for training images there are the final model's, which trained "
                "on them and is overconfident on its own training images. Use mode: cross_val."
            )
        names = list(ctx.info.class_names)
        settings: dict[str, Any] = {
            "mode": mode,
            "rank_by": self.rank_by,
            "filter_by": self.filter_by,
            "sets": [s for s in sets if s == "test" or mode == "cross_val"],
        }
        if "test" in sets:
            self._test(ctx, res, names, settings)
        if "train" in sets and mode == "cross_val":
            self._train(ctx, res, names, settings)
        res.data["settings"] = settings
        if not settings["sets"]:
            res.summary.append("label_issues: no set was searched.")
        return res

    def _search(
        self, res: ProbeResult, labels: np.ndarray, probs: np.ndarray, thresholds: Any, what: str
    ) -> LabelIssues | None:
        try:
            return find_issues(
                labels, probs, rank_by=self.rank_by, filter_by=self.filter_by, thresholds=thresholds
            )
        except (ValueError, TypeError) as e:  # cleanlab refuses e.g. a set with one class
            res.warnings.append(f"label_issues: the {what} set could not be searched: {e}")
            return None

    def _test(self, ctx: ProbeContext, res: ProbeResult, names: list[str], settings: dict[str, Any]) -> None:
        """Search the test set with the final model's probabilities and split its errors into
        probable label errors and the model's own."""
        p = ctx.predictions
        labels, probs = p.labels.numpy(), p.probs.double().numpy()
        thresholds = _test_thresholds(ctx, res, settings)
        issues = self._search(res, labels, probs, thresholds, "test")
        if issues is None:
            return
        errors = _test_errors(ctx, settings)
        records = present.issue_records(issues, probs, labels, p.index, errors)
        label_like = sorted(errors & set(issues.ranked.tolist()))
        n = len(labels)
        res.metrics.update(
            n_test_issues=len(records),
            test_issue_rate=len(records) / n if n else 0.0,
            n_errors_likely_label_issue=len(label_like),
            n_errors_model=len(errors) - len(label_like),
        )
        if present.finite(issues.estimated_noise_rate):
            res.metrics["test_estimated_noise_rate"] = issues.estimated_noise_rate
        pairs = present.pair_rows(issues, names, self.n_pairs)
        res.data["test"] = {
            "issues": records,
            "errors_likely_label_issue": [int(p.index[i]) for i in label_like],
            "errors_likely_label_issue_positions": label_like,
            "noise_pairs": pairs,
            "confident_joint": issues.confident_joint.tolist(),
            "thresholds": [round(float(t), 6) for t in issues.thresholds],
        }
        self._test_views(ctx, res, names, issues, records, pairs)
        res.summary.extend(self._test_summary(settings, n, len(records), len(errors), len(label_like), pairs))

    def _test_views(
        self,
        ctx: ProbeContext,
        res: ProbeResult,
        names: list[str],
        issues: LabelIssues,
        records: list[dict[str, Any]],
        pairs: list[dict[str, Any]],
    ) -> None:
        """The test set's issue and noise-pair tables, its gallery of candidates and its noise matrix."""
        res.tables.append(
            present.issue_table("Likely label errors in the test set", records, names, "test", self.max_rows)
        )
        res.tables.append(present.pair_table("Estimated label noise per class pair (test set)", pairs))
        res.figures["test_candidates"] = present.gallery(
            ctx.split.test_x,
            records,
            names,
            "Likely label errors, test set (#index given → suggested, label quality)",
            self.gallery_size,
        )
        res.figures["test_noise"] = present.noise_figure(
            issues, names, "Estimated label noise, test set (% of each given label)"
        )
        res.captions["test_noise"] = (
            "Row i, column j: estimated share (%) of test images labeled i whose true class is j."
        )

    def _test_summary(
        self,
        settings: dict[str, Any],
        n: int,
        n_issues: int,
        n_errors: int,
        n_label_like: int,
        pairs: list[dict[str, Any]],
    ) -> list[str]:
        """The summary lines of the test-set search: ``n_issues`` flagged of ``n`` labels, and
        ``n_label_like`` of the ``n_errors`` test errors flagged as label errors."""
        swap = (
            f"; most frequent: {pairs[0]['true_name']} labeled {pairs[0]['given_name']} "
            f"(about {pairs[0]['count']})"
            if pairs
            else ""
        )
        lines = [
            f"{n_issues} of {n} test labels ({n_issues / max(n, 1):.1%}) look wrong to confident "
            f"learning (mode {settings['mode']}: the final model's test probabilities, thresholds from the "
            f"{settings['test_thresholds_from']} set){swap}.",
            f"Of the {n_errors} test errors, {n_label_like} are probably label errors rather than "
            f"model errors (the label itself is flagged); {n_errors - n_label_like} look like the "
            "model's own.",
        ]
        if settings["mode"] == "holdout":
            lines.append(
                "Training labels were not checked: mode holdout has no out-of-sample probabilities for "
                f"them (mode: cross_val trains {self.folds} models on folds, about {self.folds - 1} extra "
                "trainings)."
            )
        return lines

    def _train(self, ctx: ProbeContext, res: ProbeResult, names: list[str], settings: dict[str, Any]) -> None:
        assert ctx.train_config is not None and ctx.model_factory is not None
        split = ctx.split
        if len(split.train_y) < self.folds:
            res.warnings.append(
                f"label_issues: {len(split.train_y)} training images are too few for {self.folds} folds"
            )
            return
        oof = out_of_fold_probs(
            split,
            ctx.train_config,
            ctx.model_factory,
            k=self.folds,
            seed=ctx.seed,
            device=ctx.device,
            epochs=self.epochs,
            batch_size=ctx.batch_size,
            track=ctx.track,
        )
        labels, probs = split.train_y.numpy(), oof.probs.double().numpy()
        settings.update(folds=self.folds, fold_epochs=oof.epochs, cross_val_seconds=round(oof.seconds, 2))
        res.metrics["cross_val_seconds"] = oof.seconds
        res.metrics["cross_val_accuracy"] = float((probs.argmax(1) == labels).mean())
        issues = self._search(res, labels, probs, None, "training")
        if issues is None:
            return
        records = present.issue_records(issues, probs, labels, split.train_index, None)
        n = len(labels)
        res.metrics.update(n_train_issues=len(records), train_issue_rate=len(records) / n)
        if present.finite(issues.estimated_noise_rate):
            res.metrics["train_estimated_noise_rate"] = issues.estimated_noise_rate
        pairs = present.pair_rows(issues, names, self.n_pairs)
        res.data["train"] = {
            "issues": records,
            "noise_pairs": pairs,
            "confident_joint": issues.confident_joint.tolist(),
            "fold": oof.fold.tolist(),
        }
        res.tables.append(
            present.issue_table(
                "Likely label errors in the training set", records, names, "training", self.max_rows
            )
        )
        res.tables.append(present.pair_table("Estimated label noise per class pair (training set)", pairs))
        res.figures["train_candidates"] = present.gallery(
            split.train_x,
            records,
            names,
            "Likely label errors, training set (#index given → suggested, label quality)",
            self.gallery_size,
        )
        res.figures["train_noise"] = present.noise_figure(
            issues, names, "Estimated label noise, training set (% of each given label)"
        )
        res.summary.append(
            f"{len(records)} of {n} training labels ({len(records) / n:.1%}) look wrong, from out-of-fold "
            f"probabilities of {self.folds} models ({oof.epochs} epochs each; out-of-fold accuracy "
            f"{res.metrics['cross_val_accuracy']:.1%}; {oof.seconds:.0f} s of extra training). Each fold "
            f"model saw {(self.folds - 1) / self.folds:.0%} of the data, so it is weaker than the "
            "final model."
        )


def _test_thresholds(ctx: ProbeContext, res: ProbeResult, settings: dict[str, Any]) -> np.ndarray | None:
    """Per-class thresholds (K,) from the validation predictions, or ``None`` (estimated on the
    test set itself, with a warning) where validation has fewer than two classes."""
    val = ctx.val_predictions
    if len(val.labels) and len(np.unique(val.labels.numpy())) > 1:
        settings["test_thresholds_from"] = "validation"
        return class_thresholds(val.labels.numpy(), val.probs.double().numpy())
    settings["test_thresholds_from"] = "test"
    res.warnings.append(
        "label_issues: no validation split; the per-class thresholds were estimated on the test set itself"
    )
    return None


def _test_errors(ctx: ProbeContext, settings: dict[str, Any]) -> set[int]:
    """Positions of the model's test errors: the ``failures`` probe's where it ran, else the
    predictions' own."""
    offered = ctx.offer("failures", FailureCases)
    settings["errors_from"] = "failures" if offered is not None else "predictions"
    if offered is not None:
        return set(offered.errors)
    return set(torch.nonzero(~ctx.predictions.correct).flatten().tolist())
