"""Tables, figures and summary sentences from a :class:`SweepResult` (no numbers computed here
beyond rounding; undefined values are ``None`` in tables and gaps in curves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stresslab.metrics.confusion import confusion_counts
from stresslab.probes.adversarial.checks import Check
from stresslab.probes.adversarial.sweep import AttackRun, SweepResult, mean_or_none, worst_case
from stresslab.probes.adversarial.threats import eps_key
from stresslab.probes.base import Table
from stresslab.report.figures import image_gallery, line_figure, matrix_figure

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
            for e in tm.epsilons
        ]
        blank = any(v is None for row in rows for v in row)
        out.append(
            Table(
                f"Accuracy versus {tm.label} epsilon",
                ["epsilon"] + [r.name for r in runs] + ["worst case"],
                rows,
                caption=f"{n} test images; epsilon in [0, 1] pixel units ({tm.label} norm of the change); "
                "worst case per image over the attacks in this table." + (_BLANK if blank else ""),
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
    confusion matrix of the whole test set, and one gallery per non-zero epsilon."""
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
    if len(res.gallery_index):
        run = gallery_run(res.runs)
        for e in run.epsilons:
            if e != 0.0 and e in run.gallery:
                out[f"gallery_{run.name}_eps{eps_key(e)}"] = _gallery(res, run, e, names)
    return out


def gallery_run(runs: Sequence[AttackRun]) -> AttackRun:
    """The run the galleries show: the first iterative L-inf attack, else the first run."""
    return next((r for r in runs if r.attack.iterative and r.norm == "linf"), runs[0])


def _gallery(res: SweepResult, run: AttackRun, e: float, names: Sequence[str]) -> tuple[Figure, str]:
    j = run.epsilons.index(e)
    adv = run.gallery[e]
    images, titles = [], []
    for g, idx in enumerate(res.gallery_index.tolist()):
        clean = res.images[g]
        delta = adv[g] - clean
        peak = float(delta.abs().max())
        amp = 0.5 / peak if peak > 0 else 1.0
        images += [clean, (delta * amp + 0.5).clamp(0, 1), adv[g]]
        p = int(run.preds[j][idx])
        titles += [
            f"{names[int(res.labels[idx])]}: {names[int(res.clean.preds[idx])]}",
            f"change x{amp:.0f}",
            f"{names[p]} ({float(run.confidence[j][idx]):.2f})",
        ]
    fig = image_gallery(images, titles, ncols=6, suptitle=f"{run.name}, epsilon {e:.4g}")
    caption = (
        f"{run.name} at epsilon {e:.4g}: clean image (true: predicted), the change amplified "
        "(gray = 0), and the adversarial image with the prediction and its confidence."
    )
    return fig, caption


def summary(res: SweepResult, checks: Sequence[Check], confusion_epsilon: float) -> list[str]:
    """Plain-language findings: clean and robust accuracy, the whole-test-set attack, the checks."""
    failed = sum(not c.passed for c in checks)
    threats = res.threats
    robust = ", ".join(
        f"{_pct(mean_or_none(res.robust(nm)))} at {threats[nm].label} epsilon {threats[nm].epsilon:.4g}"
        for nm in res.norms()
    )
    whole = res.whole
    return [
        f"Clean accuracy {_pct(mean_or_none(res.clean.correct))} on {len(res.labels)} test images; "
        f"robust accuracy {robust} (worst case per image over all attacks run).",
        f"{whole.attack.title} {res.threats[whole.norm].label} at epsilon {confusion_epsilon:.4g} on all "
        f"{len(res.whole_labels)} test images: accuracy {_pct(whole.accuracy()[0])}.",
        f"{len(checks) - failed} of {len(checks)} validity checks passed"
        + (": see the warnings." if failed else "."),
    ]
