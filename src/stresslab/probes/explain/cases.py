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
CHOSEN = "chosen"
SAMPLE = "sample"

#: Without n_correct_per_class or n_correct: one correct case per class up to this many
#: classes, else this many in all, spread over the classes (100 classes do not give 100).
CORRECT_CAP = 20


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


@dataclass(frozen=True)
class CaseChoice:
    """Which cases to explain (see ``ExplainProbe``): the failure counts, the correct ones
    (``n_correct_per_class`` per class, or ``n_correct`` in all spread over the classes, or
    the default: one per class up to :data:`CORRECT_CAP` classes, else :data:`CORRECT_CAP`
    spread), or exactly the official test-set ``indices``."""

    n_high_confidence: int
    n_uncertain: int
    min_confidence: float
    n_correct_per_class: int | None = None
    n_correct: int | None = None
    indices: tuple[int, ...] | None = None

    def correct_plan(self, num_classes: int) -> tuple[int | None, int]:
        """(per class, None) or (None, in all): how the correct cases are drawn for K classes."""
        if self.n_correct is not None:
            return None, self.n_correct
        if self.n_correct_per_class is not None:
            return self.n_correct_per_class, 0
        return (1, 0) if num_classes <= CORRECT_CAP else (None, CORRECT_CAP)


def _pools(ctx: ProbeContext) -> list[list[int]]:
    """Per true class, its correctly predicted positions in a seeded random order."""
    p = ctx.predictions
    correct = p.correct
    g = ctx.generator(salt=7)
    pools = []
    for cls in range(ctx.info.num_classes):
        pool = torch.nonzero(correct & (p.labels == cls)).flatten()
        pools.append([int(i) for i in pool[torch.randperm(len(pool), generator=g)]])
    return pools


def round_robin(pools: list[list[int]], n: int, seen: set[int]) -> list[int]:
    """Up to ``n`` positions, one per class in turn (class 0, 1, ..., then each class's second),
    skipping ``seen`` and exhausted classes."""
    out: list[int] = []
    queues = [[i for i in pool if i not in seen] for pool in pools]
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


def chosen_cases(p: Predictions, indices: tuple[int, ...]) -> tuple[list[Case], list[int]]:
    """The cases at official test-set ``indices`` (mapped through ``p.index``), in the order
    given (a repeated index once), and the indices this run's test set does not hold."""
    where = {int(idx): pos for pos, idx in enumerate(p.index.tolist())}
    once = list(dict.fromkeys(indices))
    unknown = [i for i in once if i not in where]
    return [_case(p, where[i], CHOSEN) for i in once if i in where], unknown


def select_cases(ctx: ProbeContext, choice: CaseChoice) -> tuple[list[Case], FailureCases | None, list[str]]:
    """Cases in report order, the failures probe's offer (``None`` when it did not run) and
    warnings about the choice.

    With ``choice.indices``: exactly those test images (kind ``chosen``). Otherwise the
    high-confidence errors, the uncertain predictions, then the correct predictions (drawn
    with the run's seed; see :meth:`CaseChoice.correct_plan`). The failure lists come from
    the ``failures`` probe's offer; when it did not run they are derived from the
    predictions by the same function (errors with confidence >= ``min_confidence``).
    """
    p = ctx.predictions
    offered = ctx.offer("failures", FailureCases)
    if choice.indices is not None:
        chosen, unknown = chosen_cases(p, choice.indices)
        notes = []
        if unknown:
            listed = ", ".join(map(str, unknown))
            notes.append(
                f"probes.explain.indices: {listed} not in this run's test set ({len(p.index)} images; "
                "with data.test_subset only the subset's indices are there); left out"
            )
        return chosen, offered, notes
    # Enough uncertain ones: at most n_high_confidence of them are already taken.
    lists = offered or failure_cases(p, choice.min_confidence, choice.n_high_confidence + choice.n_uncertain)
    cases: list[Case] = []
    seen: set[int] = set()
    for positions, kind, limit in (
        (lists.high_confidence, HIGH_CONFIDENCE, choice.n_high_confidence),
        (lists.most_uncertain, UNCERTAIN, choice.n_uncertain),
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
    per_class, total = choice.correct_plan(ctx.info.num_classes)
    if per_class or total:
        pools = _pools(ctx)
        if per_class:
            picked = [i for pool in pools for i in [j for j in pool if j not in seen][:per_class]]
        else:
            picked = round_robin(pools, total, seen)
        cases.extend(_case(p, position, CORRECT) for position in picked)
    return cases, offered, []


def sample_cases(ctx: ProbeContext, n: int) -> list[Case]:
    """The seeded class-stratified sample of ``n`` test images (``ctx.sample``, shared with the
    other probes that sample), as cases of kind ``SAMPLE``, in test-set order."""
    p = ctx.predictions
    return [_case(p, int(pos), SAMPLE) for pos in ctx.sample(n, "explain")]
