"""Tables, figures and summary sentences from a :class:`SweepResult` (no numbers computed here
beyond rounding; undefined values are ``None`` in tables and gaps in curves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stresslab.metrics.confusion import confusion_counts
from stresslab.probes.adversarial.checks import Check
from stresslab.probes.adversarial.gallery import galleries
from stresslab.probes.adversarial.numbers import similar_up_to
from stresslab.probes.adversarial.sweep import SweepResult, mean_or_none, worst_case
from stresslab.probes.base import Table
from stresslab.report.figures import line_figure, matrix_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BLANK = " A blank cell is undefined: no image was attacked there."


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2%}"


def tables(res: SweepResult, checks: Sequence[Check], names: Sequence[str]) -> list[Table]:
    """Accuracy versus epsilon per norm, robust accuracy per class, and the validity checks."""
    out = []
    n = len(res.labels)
    for norm in res.norms():
        tm = res.threats[norm]
        runs = [r for r in res.runs if r.norm == norm]
        rows = [
            [round(e, 5)]
            + [_r(r.accuracy_at(e)) for r in runs]
            + [_r(mean_or_none(worst_case(res.clean.correct, runs, e)))]
            + [_r(r.mean_ssim()[r.epsilons.index(e)]) for r in runs]
            for e in tm.epsilons
        ]
        blank = any(v is None for row in rows for v in row)
        out.append(
            Table(
                f"Accuracy versus {tm.label} epsilon",
                ["epsilon"] + [r.name for r in runs] + ["worst case"] + [f"SSIM {r.name}" for r in runs],
                rows,
                caption=f"{n} test images; epsilon in [0, 1] pixel units ({tm.label} norm of the change); "
                "worst case per image over the attacks in this table. SSIM: mean structural similarity "
                "of the attacked images to the clean ones (Wang et al., 2004; 1 = identical), a "
                "perceptual distance beside each epsilon." + (_BLANK if blank else ""),
            )
        )
    norms = res.norms()
    robust = {norm: res.robust(norm) for norm in norms}
    rows = []
    for k, name in enumerate(names):
        m = res.labels == k
        row: list[Any] = [name, int(m.sum()), _r(mean_or_none(res.clean.correct[m]))]
        rows.append(row + [_r(mean_or_none(robust[norm][m])) for norm in norms])
    empty = [str(r[0]) for r in rows if r[1] == 0]
    out.append(
        Table(
            "Robust accuracy per class",
            ["class", "images", "clean"]
            + [f"robust {res.threats[nm].label} {res.threats[nm].epsilon:.4g}" for nm in norms],
            rows,
            caption="Worst case per image over every attack run at the reporting epsilon."
            + (
                f" No image of {', '.join(empty)} was attacked, so its accuracies are undefined (blank)."
                if empty
                else ""
            ),
        )
    )
    out.append(
        Table(
            "Validity checks",
            ["check", "scope", "result", "detail"],
            [c.row() for c in checks],
            caption="Carlini et al., 'On Evaluating Adversarial Robustness' (2019). A failed check "
            "puts a warning next to the numbers.",
        )
    )
    return out


def figures(
    res: SweepResult, names: Sequence[str], confusion_epsilon: float
) -> dict[str, tuple[Figure, str]]:
    """Figures by file stem, each with its caption: accuracy curves per norm, the adversarial
    confusion matrix of the whole test set, and per attack and non-zero epsilon a gallery of
    the images it flipped."""
    out: dict[str, tuple[Figure, str]] = {}
    n = len(res.labels)
    for norm in res.norms():
        tm = res.threats[norm]
        curves: dict[str, Sequence[float]] = {
            r.name: [float("nan") if a is None else a for a in r.accuracy()]
            for r in res.runs
            if r.norm == norm
        }
        fig = line_figure(
            list(tm.epsilons),
            curves,
            title=f"Accuracy under attack ({tm.label})",
            xlabel="epsilon (pixel units)",
            ylabel="accuracy",
        )
        out[f"accuracy_vs_epsilon_{norm}"] = (
            fig,
            f"Accuracy on {n} test images versus the {tm.label} radius of the attack.",
        )
    cm = confusion_counts(res.whole_labels, res.whole.preds[0], len(names))
    attack, label = res.whole.attack.title, res.threats[res.whole.norm].label
    fig = matrix_figure(
        cm,
        list(names),
        title=f"{attack} {label}, epsilon {confusion_epsilon:.4g}",
        xlabel="predicted under attack",
    )
    out["adversarial_confusion"] = (
        fig,
        f"Confusion matrix on all {len(res.whole_labels)} test images under {attack} ({label}, "
        f"epsilon {confusion_epsilon:.4g}).",
    )
    out.update(galleries(res, names))
    return out


def robust_sentence(res: SweepResult) -> str:
    """Clean and robust accuracy per norm, and which attack set each robust accuracy."""
    parts = []
    for nm in res.norms():
        tm = res.threats[nm]
        worst = mean_or_none(res.robust(nm))
        by, who = res.by_attack(nm), res.set_by(nm)
        text = f"{_pct(worst)} at {tm.label} epsilon {tm.epsilon:.4g}"
        alone = None if who is None else by[who]
        if who is not None and worst is not None and alone is not None and worst < alone:
            text += (
                f", the worst case per image over the {len(by)} attack runs (the strongest alone, "
                f"{who}, gives {_pct(alone)})"
            )
        elif who is not None:
            text += f", set by {who} (worst case per image over the {len(by)} attack runs)"
        parts.append(text)
    return (
        f"Clean accuracy {_pct(mean_or_none(res.clean.correct))} on {len(res.labels)} test images; "
        f"robust accuracy {'; '.join(parts)}."
    )


def ssim_sentence(res: SweepResult, threshold: float) -> str:
    """The largest epsilon per attack up to which the mean SSIM stays at least ``threshold``."""
    parts = []
    for run in res.runs:
        e = similar_up_to(run, threshold)
        if e is not None:
            largest = e == max(run.epsilons)
            parts.append(f"{run.name} up to epsilon {e:.4g}" + (" (the largest swept)" if largest else ""))
    return (
        f"Can a person tell? Mean SSIM to the clean images (Wang et al., 2004) stays >= {threshold:g} "
        f"for {', '.join(parts) or 'no attack'}. {threshold:g} is a rule of thumb for a change that is "
        "hard to see, not a measured threshold of human perception (Sharif et al., 2018, show that "
        "small L-p changes can still be visible): look at the galleries."
    )


def summary(
    res: SweepResult, checks: Sequence[Check], confusion_epsilon: float, ssim_threshold: float = 0.95
) -> list[str]:
    """Plain-language findings: clean and robust accuracy and the attack that set it, attacks
    added automatically, the SSIM threshold per attack, the whole-test-set attack, the checks."""
    failed = sum(not c.passed for c in checks)
    whole = res.whole
    added = [
        f"{name} (score-based, no gradients) ran automatically because {why}; it counts in the worst case."
        for name, why in res.added.items()
    ]
    return [
        robust_sentence(res),
        *added,
        ssim_sentence(res, ssim_threshold),
        f"{whole.attack.title} {res.threats[whole.norm].label} at epsilon {confusion_epsilon:.4g} on all "
        f"{len(res.whole_labels)} test images: accuracy {_pct(whole.accuracy()[0])}.",
        f"{len(checks) - failed} of {len(checks)} validity checks passed"
        + (": see the warnings." if failed else "."),
    ]
