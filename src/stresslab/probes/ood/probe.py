"""The ``ood`` probe: which test images are out of the model's scope, and which score flags
its errors best."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stresslab.data.sampling import stratified_sample
from stresslab.metrics.ood import auroc, detection_metrics
from stresslab.probes.base import Headline, Offer, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.ood import present
from stresslab.probes.ood.scores import SCORES, Fitted, all_scores, fit
from stresslab.probes.ood.sets import FAR_SETS, NEAR_CORRUPTIONS, builtin_set, fit_to_model, load_user_set
from stresslab.probes.predictions import Predictions

log = logging.getLogger(__name__)

#: Added to the sample seed for the reference half of a test set without training images, so
#: the halves do not follow the shared test samples.
REFERENCE_SALT = 7_919


@dataclass
class OodScores(Offer):
    """Per test image (``index``: official test indices, in test order) every outlier score
    (higher = more out of distribution), and the score that best separates the model's errors
    from its correct predictions (``best_failure_score``)."""

    index: list[int]
    scores: dict[str, list[float]]
    best_failure_score: str


@register_probe("ood")
class OodProbe(Probe):
    """Out-of-distribution scores for every test image from the model alone (MSP, max logit,
    energy; Mahalanobis and kNN on ``features()`` fitted on ``max_train`` training images),
    evaluated against out-of-distribution sets (AUROC, AUPR-in/out, FPR at 95% TPR) and as
    detectors of the model's own errors (Jaeger et al., "A Call to Reflect on Evaluation
    Practices for Failure Detection in Image Classification", ICLR 2023).

    ``builtin``: far sets to build (see :mod:`.sets`), ``n_images`` images each, the ones made
    from test images on a ``ctx.sample`` of that size; ``near``: corruptions applied at
    severity 5; ``sets``: the user's own, ``{name: {dataset: ..., root: ..., <loader
    options>}}``, read here so an unreadable set fails before training; ``k``: the kNN
    score's neighbour rank (Sun et al. use 50 on CIFAR-10 with all 50,000 images).

    Without training images (a trained model probed on a test folder) the reference is a
    seeded, class-stratified half of the test set, and every score is computed on the other
    half and on outlier sets made from it, so no image is both reference and scored.
    """

    order = 38
    offers = OodScores
    headlines = (
        Headline("failure_auroc_best", "error AUROC ({best_failure_score})"),
        Headline("ood_auroc_best", "OOD AUROC ({best_ood_score}, mean of sets)"),
    )

    def __init__(
        self,
        *,
        n_images: int = 500,
        max_train: int | None = 3000,
        k: int = 10,
        builtin: list[str] | tuple[str, ...] = FAR_SETS,
        near: list[str] | tuple[str, ...] = NEAR_CORRUPTIONS,
        sets: dict[str, dict[str, Any]] | None = None,
        gallery_size: int = 24,
    ) -> None:
        if n_images < 2:
            raise ValueError(f"n_images must be >= 2, got {n_images}")
        if max_train is not None and max_train < 2:
            raise ValueError(f"max_train must be >= 2 or null (all), got {max_train}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bad = [b for b in builtin if b not in FAR_SETS]
        if bad:
            raise ValueError(f"builtin: unknown set(s) {', '.join(bad)}; choose from {', '.join(FAR_SETS)}")
        from stresslab.corruptions import CORRUPTIONS

        bad = [c for c in near if c not in CORRUPTIONS.names()]
        if bad:
            raise ValueError(
                f"near: unknown corruption(s) {', '.join(bad)}; choose from {', '.join(CORRUPTIONS.names())}"
            )
        self.n_images, self.max_train, self.k = n_images, max_train, k
        self.builtin, self.near, self.gallery_size = tuple(builtin), tuple(near), gallery_size
        self.user_sets = {name: load_user_set(name, spec) for name, spec in (sets or {}).items()}

    def without_training_data(self) -> str | None:
        """Without training images the reference is a seeded half of the test set."""
        return (
            "its Mahalanobis and kNN reference is fitted on a seeded half of the test set, and every "
            "score is reported on the other half and on outlier sets made from it"
        )

    def _fit(self, ctx: ProbeContext, res: ProbeResult, reference: Tensor | None) -> Fitted:
        """The feature scores fitted on ``max_train`` training images, or, where ``reference``
        (test positions) is given, on those test images' embeddings (already computed)."""
        p = ctx.predictions
        if p.embeddings.ndim != 2 or p.embeddings.shape[1] == 0:
            res.warnings.append(
                "The model has no features(), so only the logit scores (msp, max_logit, energy) "
                "were computed; Mahalanobis and kNN need the embedding before the head."
            )
            return fit(None, ctx.split.train_y, self.k)
        if reference is not None:
            res.data["samples"]["reference"] = len(reference)
            if len(reference) < 2:
                res.warnings.append(
                    f"Only {len(p.labels)} test images and no training images: too few to fit the "
                    "Mahalanobis and kNN reference on half of them, so only the logit scores were computed."
                )
                return fit(None, p.labels, self.k)
            feats, labels = p.embeddings[reference], p.labels[reference]
        else:
            y = ctx.split.train_y
            n = len(y)
            pos = torch.arange(n) if not self.max_train or self.max_train >= n else None
            if pos is None:
                pos = stratified_sample(y, int(self.max_train or n), seed=ctx.sample_seed)
            train = self._predict(ctx, ctx.split.train_x[pos], y[pos])
            res.data["samples"]["train"] = len(pos)
            feats, labels = train.embeddings, train.labels
        rank = len(labels) - len(torch.unique(labels))  # the scatter matrix's rank at most
        if rank < feats.shape[1]:
            res.warnings.append(
                f"The Mahalanobis covariance comes from {len(labels)} images in {feats.shape[1]} "
                f"dimensions (rank at most {rank}), kept invertible by a ridge only: its distances "
                "are inflated along unseen directions, so read the mahalanobis score with care "
                "(raise max_train, or use more images)."
            )
        return fit(feats, labels, self.k)

    def _halves(self, ctx: ProbeContext) -> tuple[Tensor | None, Tensor]:
        """(reference, scored): sorted test positions. With training images: ``None`` and every
        test position. Without: a seeded class-stratified half of the test set (at most
        ``max_train`` images, every class keeping one image on the scored side) as the
        reference, and the rest scored, so no image is both."""
        labels = ctx.predictions.labels
        n = len(labels)
        if len(ctx.split.train_y):
            return None, torch.arange(n)
        size = n // 2 if not self.max_train else min(n // 2, int(self.max_train))
        reference = stratified_sample(labels, size, seed=ctx.sample_seed + REFERENCE_SALT, keep_one_out=True)
        scored = torch.ones(n, dtype=torch.bool)
        scored[reference] = False
        return reference, torch.nonzero(scored).flatten()

    def _predict(self, ctx: ProbeContext, x: Tensor, y: Tensor | None = None) -> Predictions:
        labels = y if y is not None else torch.zeros(len(x), dtype=torch.long)
        return Predictions.compute(
            ctx.model, x, labels, torch.arange(len(x)), batch_size=ctx.forward_batch, device=ctx.device
        )

    def _base(self, ctx: ProbeContext, scored: Tensor, reference: Tensor | None) -> Tensor:
        """Test positions the generated sets are made from: the shared sample of ``n_images``,
        or, beside a reference half, a seeded sample of that size from the scored half only."""
        if reference is None:
            return ctx.sample(self.n_images, "ood")
        labels = ctx.predictions.labels[scored]
        pick = stratified_sample(labels, min(self.n_images, len(scored)), seed=ctx.sample_seed)
        ctx.samples["ood"] = len(pick)
        return scored[pick]

    def _sets(self, ctx: ProbeContext, res: ProbeResult, pos: Tensor) -> dict[str, Tensor]:
        info = ctx.info
        base = ctx.split.test_x[pos]
        out: dict[str, Tensor] = {}
        for name in self.builtin:
            gen = ctx.generator(zlib.crc32(name.encode()) % 10_000)
            try:
                out[name] = builtin_set(name, base, len(base), gen)
            except ImportError as e:  # photos need scikit-image, an optional dependency
                res.warnings.append(f"OOD set {name} skipped: {e} (pip install scikit-image).")
        for c in self.near:
            out[f"corrupted:{c}"] = builtin_set(f"corrupted:{c}", base, len(base), ctx.generator(17))
        for name, x in self.user_sets.items():
            x = x[: self.n_images]
            fitted, note = fit_to_model(x, info.channels, (info.height, info.width))
            if note:
                res.summary.append(f"OOD set {name}: {len(x)} images {note}.")
            out[name] = fitted
        return out

    def run(self, ctx: ProbeContext) -> ProbeResult:
        reference, scored = self._halves(ctx)
        whole = ctx.predictions
        p = whole if reference is None else _rows(whole, scored)
        res = ProbeResult()
        res.data["samples"] = {"test": len(p.labels)}
        fitted = self._fit(ctx, res, reference)
        if reference is not None:
            present.reference_note(res, whole.index[reference], len(scored), ctx.sample_seed + REFERENCE_SALT)
        test_scores = all_scores(p.logits, p.embeddings, fitted)
        names = [s for s in SCORES if s in test_scores]

        # Failure detection: errors (outside) against correct predictions (inside).
        failure = {s: auroc(test_scores[s][p.correct], test_scores[s][~p.correct]) for s in names}
        finite = {s: v for s, v in failure.items() if v == v}
        best_fail = max(finite, key=lambda s: finite[s]) if finite else "msp"
        for s, v in finite.items():
            res.metrics[f"failure_auroc.{s}"] = v
        if finite:
            res.metrics["failure_auroc_best"] = finite[best_fail]
        else:
            res.warnings.append(
                "ood: failure detection is undefined: the model has no errors, or no correct "
                "predictions, on the test set (failure_auroc left out)"
            )

        # Out-of-distribution sets, scored with the same detectors.
        rows: dict[str, dict[str, dict[str, float]]] = {}
        set_scores: dict[str, dict[str, Tensor]] = {}
        with ctx.track("ood: scoring sets", 1) as advance:
            for set_name, x in self._sets(ctx, res, self._base(ctx, scored, reference)).items():
                pred = self._predict(ctx, x)
                set_scores[set_name] = all_scores(pred.logits, pred.embeddings, fitted)
                rows[set_name] = {
                    s: detection_metrics(test_scores[s], set_scores[set_name][s]) for s in names
                }
                res.data["samples"][set_name] = len(x)
                for s, m in rows[set_name].items():
                    for key, v in m.items():
                        if v == v:
                            res.metrics[f"{set_name}.{s}.{key}"] = v
            advance(1)
        mean_auroc = {s: sum(rows[n][s]["auroc"] for n in rows) / len(rows) for s in names} if rows else {}
        best_ood = max(mean_auroc, key=lambda s: mean_auroc[s]) if mean_auroc else "msp"
        if mean_auroc:
            res.metrics["ood_auroc_best"] = mean_auroc[best_ood]
        res.data["settings"] = {
            "k": self.k,
            "n_images": self.n_images,
            "max_train": self.max_train,
            "best_failure_score": best_fail,
            "best_ood_score": best_ood,
        }
        res.data["failure_auroc"] = finite
        res.data["ood"] = rows
        present.tables(res, rows, finite, names)
        present.failure_section(res, test_scores, p.correct, best_fail, finite)
        present.histograms(res, test_scores, set_scores, list(dict.fromkeys((best_ood, "msp"))))
        present.gallery(res, ctx, p, scored, test_scores[best_ood], best_ood, self.gallery_size)
        res.offer = OodScores(
            index=[int(i) for i in p.index.tolist()],
            scores={s: [round(float(v), 6) for v in test_scores[s].tolist()] for s in names},
            best_failure_score=best_fail,
        )
        return res


def _rows(p: Predictions, pos: Tensor) -> Predictions:
    """The predictions of the test images at positions ``pos`` (int64 (M,)), in that order."""
    return Predictions(
        logits=p.logits[pos], labels=p.labels[pos], embeddings=p.embeddings[pos], index=p.index[pos]
    )
