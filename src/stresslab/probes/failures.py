"""The ``failures`` probe: every misclassified test image, the confident ones, the uncertain ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from stresslab.data.base import to_float
from stresslab.metrics.confusion import confusion_counts, top_confused_pairs
from stresslab.probes.base import Headline, Offer, Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.probes.predictions import Predictions
from stresslab.report.figures import image_gallery

if TYPE_CHECKING:
    from stresslab.probes.predictions import Predictions


def case_records(ctx: ProbeContext, positions: torch.Tensor) -> list[dict[str, Any]]:
    """One dict per test row: position, official index, true/pred class, confidence, entropy, margin."""
    p = ctx.predictions
    conf, ent, mar, preds = p.confidence, p.entropy, p.margin, p.preds
    return [
        {
            "position": int(i),
            "index": int(p.index[i]),
            "true": int(p.labels[i]),
            "pred": int(preds[i]),
            "confidence": float(conf[i]),
            "entropy": float(ent[i]),
            "margin": float(mar[i]),
        }
        for i in positions.tolist()
    ]


@dataclass
class FailureCases(Offer):
    """The failure lists the ``failures`` probe hands to later probes (``ctx.offer``).

    Each list holds test-set positions (rows of ``ctx.split.test_x`` and
    ``ctx.predictions``; ``ctx.predictions.index[pos]`` is the official test index).
    ``errors``: every misclassified image, most confident first; ``high_confidence``: the
    errors with confidence >= ``threshold`` (in [0, 1]), in the same order;
    ``most_uncertain``: the highest-entropy predictions, most uncertain first.
    """

    errors: list[int]
    high_confidence: list[int]
    most_uncertain: list[int]
    threshold: float


def failure_cases(p: Predictions, threshold: float, n_uncertain: int) -> FailureCases:
    """The failure lists of predictions ``p``: every error by confidence (highest first,
    ties in test order), those with confidence >= ``threshold`` (in [0, 1]) in the same
    order, and the ``n_uncertain`` highest-entropy predictions (highest first).

    The one derivation of these lists: the ``failures`` probe offers it, and a probe that
    runs without ``failures`` calls it on the predictions.
    """
    conf = p.confidence
    wrong = torch.nonzero(~p.correct).flatten()
    errors = wrong[torch.argsort(conf[wrong], descending=True, stable=True)]
    # float64: the threshold is compared as written, not rounded to float32
    high = errors[conf[errors].double() >= threshold]
    uncertain = torch.argsort(p.entropy, descending=True, stable=True)[: max(0, n_uncertain)]
    return FailureCases(
        errors=errors.tolist(),
        high_confidence=high.tolist(),
        most_uncertain=uncertain.tolist(),
        threshold=threshold,
    )


@register_probe("failures")
class FailuresProbe(Probe):
    """Misclassified test images with confidence, entropy and margin; high-confidence errors
    (confidence >= ``threshold``), the most uncertain predictions (highest entropy) and
    galleries for the most confused class pairs. Each case keeps its test-set index.
    """

    order = 20
    headlines = (Headline("n_high_confidence_errors", "confident errors"),)

    requires = ("evaluation",)
    offers = FailureCases

    def __init__(
        self,
        *,
        threshold: float = 0.9,
        n_uncertain: int = 16,
        gallery_size: int = 24,
        n_pairs: int = 3,
        per_pair: int = 8,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.n_uncertain = n_uncertain
        self.gallery_size = gallery_size
        self.n_pairs = n_pairs
        self.per_pair = per_pair

    def _title(self, names: list[str], r: dict[str, Any]) -> str:
        return f"#{r['index']} {names[r['true']][:10]}\n→ {names[r['pred']][:10]} {r['confidence']:.2f}"

    def _gallery(self, ctx: ProbeContext, recs: list[dict[str, Any]], title: str) -> Any:
        names = list(ctx.info.class_names)
        imgs = to_float(ctx.split.test_x[[r["position"] for r in recs]]) if recs else torch.empty(0)
        return image_gallery(imgs, [self._title(names, r) for r in recs], ncols=8, suptitle=title)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        p = ctx.predictions
        names = list(ctx.info.class_names)
        res = ProbeResult()
        n = len(p.labels)
        cases = failure_cases(p, self.threshold, self.n_uncertain)
        conf = p.confidence
        errors = case_records(ctx, torch.tensor(cases.errors, dtype=torch.long))
        high = errors[: len(cases.high_confidence)]
        uncertain = case_records(ctx, torch.tensor(cases.most_uncertain, dtype=torch.long))

        correct_conf = conf[p.correct]
        res.metrics.update(
            n_errors=len(errors),
            error_rate=len(errors) / n if n else 0.0,
            n_high_confidence_errors=len(high),
            high_confidence_share_of_errors=len(high) / len(errors) if errors else 0.0,
            mean_confidence_errors=float(conf[~p.correct].mean()) if errors else 0.0,
            mean_confidence_correct=float(correct_conf.mean()) if len(correct_conf) else 0.0,
            threshold=self.threshold,
        )
        res.data.update(
            errors=errors, high_confidence_errors=high, most_uncertain=uncertain, threshold=self.threshold
        )
        res.offer = cases

        res.summary.append(
            f"{len(errors)} of {n} test images are misclassified; {len(high)} of them with confidence "
            f">= {self.threshold:g} (mean confidence {res.metrics['mean_confidence_errors']:.2f} when wrong "
            f"vs {res.metrics['mean_confidence_correct']:.2f} when right)."
        )
        if high:
            pair_counts: dict[tuple[int, int], int] = {}
            for r in high:
                pair_counts[(r["true"], r["pred"])] = pair_counts.get((r["true"], r["pred"]), 0) + 1
            (t, q), c = max(pair_counts.items(), key=lambda kv: kv[1])
            res.summary.append(
                f"Most frequent confident mistake: {names[t]} → {names[q]} ({c} of {len(high)})."
            )

        cols = ["test index", "true", "predicted", "confidence", "entropy (nats)", "margin"]

        def rows(recs: list[dict[str, Any]]) -> list[list[Any]]:
            return [
                [r["index"], names[r["true"]], names[r["pred"]], r["confidence"], r["entropy"], r["margin"]]
                for r in recs
            ]

        res.tables.append(
            Table(
                f"High-confidence errors (confidence >= {self.threshold:g})",
                cols,
                rows(high[:50]),
                caption=f"{len(high)} in all; the full list of errors is in results/failures.json.",
            )
        )
        res.tables.append(Table("Most uncertain predictions (highest entropy)", cols, rows(uncertain)))

        res.figures["high_confidence_errors"] = self._gallery(
            ctx, high[: self.gallery_size], "High-confidence errors (#index true → predicted confidence)"
        )
        res.figures["most_uncertain"] = self._gallery(ctx, uncertain, "Most uncertain predictions")

        pairs = (
            ctx.results["evaluation"].data.get("confused_pairs", []) if "evaluation" in ctx.results else []
        )
        if not pairs and errors:
            cm = confusion_counts(p.labels, p.preds, len(names))
            pairs = [{"true": t, "pred": q} for t, q in top_confused_pairs(cm, self.n_pairs)]
        for j, pair in enumerate(pairs[: self.n_pairs]):
            t, q = pair["true"], pair["pred"]
            recs = [r for r in errors if r["true"] == t and r["pred"] == q][: self.per_pair]
            stem = f"pair_{j + 1}"
            res.figures[stem] = self._gallery(ctx, recs, f"{names[t]} predicted as {names[q]}")
            res.captions[stem] = (
                f"Confused pair {j + 1}: true {names[t]}, predicted {names[q]} (most confident first)."
            )
        return res
