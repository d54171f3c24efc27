"""The validity checks of Carlini et al., "On Evaluating Adversarial Robustness" (2019),
read from a :class:`SweepResult`: each check passes or fails with a sentence of detail."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from stresslab.attacks.base import NORMS
from stresslab.probes.adversarial.sweep import AttackRun, SweepResult, mean_or_none, worst_case

# Per-pixel slack for the "within epsilon and in [0, 1]" check: x + delta - x in float32
# can exceed epsilon by a few ulps.
BOUND_SLACK = 1e-5


@dataclass(frozen=True)
class Check:
    """One check: what was checked, on what (``scope``), whether it passed, and the numbers."""

    check: str
    scope: str
    passed: bool
    detail: str

    @property
    def result(self) -> str:
        return "pass" if self.passed else "fail"

    def row(self) -> list[Any]:
        """``[check, scope, "pass" | "fail", detail]`` for the report's table."""
        return [self.check, self.scope, self.result, self.detail]

    def warning(self) -> str:
        return f"check failed: {self.check} ({self.scope}): {self.detail}"


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def validity_checks(res: SweepResult, *, tolerance: float, convergence_threshold: float) -> list[Check]:
    """Every check on ``res``, in report order.

    ``tolerance`` is the rise in accuracy (a fraction) the monotonicity and
    iterative-versus-single-step checks allow; ``convergence_threshold`` the largest change
    in robust accuracy (a fraction) a run with a doubled setting may cause. An undefined
    accuracy (no image attacked) is shown as such and never compared.
    """
    rows = [*_epsilon_zero_checks(res), *_monotonicity_checks(res, tolerance)]
    for norm in NORMS:
        gradient = [r for r in res.runs if r.norm == norm and r.attack.uses_gradients]
        rows.extend(_iterative_checks(norm, gradient, tolerance))
        rows.extend(_score_based_check(res, norm, gradient, tolerance))
    rows.extend(_convergence_checks(res, convergence_threshold))
    rows.append(_gradient_check(res))
    rows.extend(_bound_check(run) for run in [*res.runs, *res.convergence, res.whole])
    rows.extend(_model_checks(res))
    return rows


def _epsilon_zero_checks(res: SweepResult) -> list[Check]:
    """Each run at epsilon 0 predicts exactly what the clean images get. One check per run."""
    rows = []
    clean_acc = mean_or_none(res.clean.correct)
    for run in res.runs:
        j = run.epsilons.index(0.0)
        changed = int((run.preds[j] != res.clean.preds).sum())
        rows.append(
            Check(
                "epsilon 0 gives clean accuracy",
                run.label,
                changed == 0,
                f"accuracy {_fmt(run.accuracy()[j])} vs clean {_fmt(clean_acc)}; "
                f"{changed} predictions differ",
            )
        )
    return rows


def _monotonicity_checks(res: SweepResult, tolerance: float) -> list[Check]:
    """Accuracy never rises by more than ``tolerance`` from one epsilon to the next larger one.
    One check per run."""
    rows = []
    for run in res.runs:
        acc = run.accuracy()
        rises = [
            f"{a:.4f} at {run.epsilons[k]:.4g} -> {b:.4f} at {run.epsilons[k + 1]:.4g}"
            for k, (a, b) in enumerate(itertools.pairwise(acc))
            if a is not None and b is not None and b > a + tolerance
        ]
        detail = "; ".join(rises) if rises else f"non-increasing over {len(acc)} epsilons"
        rows.append(Check("accuracy does not rise with epsilon", run.label, not rises, detail))
    return rows


def _iterative_checks(norm: str, gradient: list[AttackRun], tolerance: float) -> list[Check]:
    """An iterative gradient attack leaves accuracy no more than ``tolerance`` above a
    single-step one at any shared epsilon. One check per (iterative, single-step) pair of
    ``gradient``, the gradient attacks of ``norm``."""
    rows = []
    multi = [r for r in gradient if r.attack.iterative]
    single = [r for r in gradient if not r.attack.iterative]
    for it in multi:
        for one in single:
            ref = dict(zip(one.epsilons, one.accuracy(), strict=True))
            worse = [
                f"epsilon {e:.4g}: {it.attack.title} {a:.4f} > {one.attack.title} {b:.4f}"
                for e, a in zip(it.epsilons, it.accuracy(), strict=True)
                if (b := ref.get(e)) is not None and a is not None and a > b + tolerance
            ]
            rows.append(
                Check(
                    f"{it.attack.title} does no worse than {one.attack.title}",
                    norm,
                    not worse,
                    "; ".join(worse) or "at every epsilon",
                )
            )
    return rows


def _convergence_checks(res: SweepResult, convergence_threshold: float) -> list[Check]:
    """Each run with a setting doubled changes robust accuracy at its epsilon by less than
    ``convergence_threshold`` (a fraction). One check per convergence run."""
    rows = []
    for other in res.convergence:
        main = next(r for r in res.runs if r.name == other.name)
        e = other.epsilons[0]
        before, after = main.accuracy_at(e), other.accuracy_at(e)
        diff = abs(after - before) if after is not None and before is not None else 0.0
        ok = diff < convergence_threshold
        rows.append(
            Check(
                f"doubling {other.doubled} changes robust accuracy by < {convergence_threshold:.2%}",
                f"{main.name} at {e:.4g}",
                ok,
                f"{_fmt(before)} -> {_fmt(after)}" + ("" if ok else "; the attack has not converged"),
            )
        )
    return rows


def _gradient_check(res: SweepResult) -> Check:
    """No clean image has an all-zero input gradient; names the attacks added because some did."""
    zero, n = res.clean.zero_gradients, len(res.clean.correct)
    return Check(
        "input gradients are non-zero",
        "clean images",
        zero == 0,
        f"{zero} of {n} images have an all-zero input gradient"
        + (
            "; gradient-based attacks cannot move them (saturated softmax or gradient masking), "
            "try loss='margin'"
            if zero
            else ""
        )
        + "".join(f"; {name} ran because {why}" for name, why in res.added.items()),
    )


def _bound_check(run: AttackRun) -> Check:
    """The run's adversarial images lie within epsilon of the clean ones and in [0, 1], up to
    ``BOUND_SLACK`` per pixel."""
    return Check(
        "adversarial images within epsilon and in [0, 1]",
        run.label,
        run.norm_excess <= BOUND_SLACK and run.box_excess <= BOUND_SLACK,
        f"largest excess over epsilon {max(run.norm_excess, 0.0):.2e}, outside [0, 1] "
        f"{max(run.box_excess, 0.0):.2e}",
    )


def _model_checks(res: SweepResult) -> list[Check]:
    """The model stayed in eval mode and its buffers (BatchNorm statistics) did not change."""
    return [
        Check(
            "model in eval mode during attacks",
            "model",
            res.eval_mode,
            "every module in eval mode" if res.eval_mode else "a module switched itself to train mode",
        ),
        Check(
            "BatchNorm statistics and buffers untouched",
            "model",
            res.buffers_unchanged,
            "buffers identical before and after"
            if res.buffers_unchanged
            else "a buffer changed during the attacks",
        ),
    ]


def _score_based_check(
    res: SweepResult, norm: str, gradient: list[AttackRun], tolerance: float
) -> list[Check]:
    """Carlini et al. (2019, Sec. 5): a score-based attack should not beat the gradient attacks;
    where it does, their gradients mislead them (gradient masking). One check per score-based run."""
    rows = []
    for run in (r for r in res.runs if r.norm == norm and not r.attack.uses_gradients):
        if not gradient:
            continue
        beaten = []
        for j, e in enumerate(run.epsilons):
            pool = [g for g in gradient if e in g.epsilons]
            grad_acc = mean_or_none(worst_case(res.clean.correct, pool, e)) if pool else None
            acc = mean_or_none(run.correct[j])
            if grad_acc is not None and acc is not None and acc < grad_acc - tolerance:
                beaten.append(
                    f"epsilon {e:.4g}: {run.attack.title} {acc:.4f} < gradient attacks {grad_acc:.4f}"
                )
        rows.append(
            Check(
                f"gradient attacks do no worse than {run.attack.title} (score-based)",
                norm,
                not beaten,
                "; ".join(beaten) + "; the gradients mislead the attacks (gradient masking): trust the "
                "worst case, which includes the score-based attack"
                if beaten
                else "at every epsilon",
            )
        )
    return rows
