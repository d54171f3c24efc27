"""Which test images to explain: the failures worth a picture, plus correct ones for contrast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions

HIGH_CONFIDENCE = "high-confidence error"
UNCERTAIN = "uncertain"
CORRECT = "correct"


@dataclass(frozen=True)
class Case:
    """One test image to explain. ``position`` is the row in ``split.test_x`` and the
    predictions; ``index`` the image's index in the official test set."""

    position: int
    index: int
    true: int
    pred: int
    confidence: float
    entropy: float
    kind: str

    @property
    def is_error(self) -> bool:
        return self.true != self.pred

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _case(p: Predictions, position: int, kind: str) -> Case:
    return Case(
        position=position,
        index=int(p.index[position]),
        true=int(p.labels[position]),
        pred=int(p.preds[position]),
        confidence=float(p.confidence[position]),
        entropy=float(p.entropy[position]),
        kind=kind,
    )


def derive_failures(p: Predictions, min_confidence: float) -> dict[str, list[dict[str, Any]]]:
    """The lists the ``failures`` probe provides, computed from predictions: errors with
    confidence >= ``min_confidence`` by confidence (highest first), and all predictions
    by entropy (highest first)."""
    wrong = (~p.correct) & (p.confidence >= min_confidence)
    pos = torch.nonzero(wrong).flatten()
    conf_order = pos[torch.argsort(p.confidence[pos], descending=True, stable=True)]
    ent_order = torch.argsort(p.entropy, descending=True, stable=True)
    return {
        "high_confidence_errors": [_case(p, int(i), HIGH_CONFIDENCE).to_dict() for i in conf_order],
        "most_uncertain": [_case(p, int(i), UNCERTAIN).to_dict() for i in ent_order[:100]],
    }


def select_cases(
    ctx: ProbeContext,
    *,
    n_high_confidence: int,
    n_uncertain: int,
    n_correct_per_class: int,
    min_confidence: float,
) -> tuple[list[Case], bool]:
    """Cases in report order: high-confidence errors, uncertain predictions, then up to
    ``n_correct_per_class`` correct predictions per true class (drawn with the run's seed).
    Returns the cases and whether the lists came from the ``failures`` probe."""
    p = ctx.predictions
    failures = ctx.results.get("failures")
    from_failures = failures is not None and "high_confidence_errors" in failures.data
    lists = failures.data if failures is not None and from_failures else derive_failures(p, min_confidence)
    cases: list[Case] = []
    seen: set[int] = set()
    for key, kind, limit in (
        ("high_confidence_errors", HIGH_CONFIDENCE, n_high_confidence),
        ("most_uncertain", UNCERTAIN, n_uncertain),
    ):
        taken = 0
        for row in lists.get(key, []):
            position = int(row["position"])
            if taken >= limit:
                break
            if position in seen:
                continue
            seen.add(position)
            cases.append(_case(p, position, kind))
            taken += 1
    if n_correct_per_class > 0:
        correct = p.correct
        g = ctx.generator(salt=7)
        for cls in range(ctx.info.num_classes):
            pool = torch.nonzero(correct & (p.labels == cls)).flatten()
            pool = pool[torch.randperm(len(pool), generator=g)]
            chosen = [int(i) for i in pool if int(i) not in seen][:n_correct_per_class]
            for position in chosen:
                seen.add(position)
                cases.append(_case(p, position, CORRECT))
    return cases, from_failures
