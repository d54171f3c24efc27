"""Which test images to explain: the failures worth a picture, plus correct ones for contrast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from stresslab.probes.base import ProbeContext
from stresslab.probes.failures import FailureCases, failure_cases
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


def select_cases(
    ctx: ProbeContext,
    *,
    n_high_confidence: int,
    n_uncertain: int,
    n_correct_per_class: int,
    min_confidence: float,
) -> tuple[list[Case], FailureCases | None]:
    """Cases in report order: high-confidence errors, uncertain predictions, then up to
    ``n_correct_per_class`` correct predictions per true class (drawn with the run's seed).

    The failure lists come from the ``failures`` probe's offer; when it did not run they are
    derived from the predictions by the same function (errors with confidence >=
    ``min_confidence``). Returns the cases and the offer (``None`` when derived).
    """
    p = ctx.predictions
    offered = ctx.offer("failures", FailureCases)
    # Enough uncertain ones: at most n_high_confidence of them are already taken.
    lists = offered or failure_cases(p, min_confidence, n_high_confidence + n_uncertain)
    cases: list[Case] = []
    seen: set[int] = set()
    for positions, kind, limit in (
        (lists.high_confidence, HIGH_CONFIDENCE, n_high_confidence),
        (lists.most_uncertain, UNCERTAIN, n_uncertain),
    ):
        taken = 0
        for position in positions:
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
    return cases, offered
