"""The evaluation probe's superclass view, for datasets with a class hierarchy (CIFAR-100).

Do the errors stay among similar fine-grained categories? Superclass accuracy, the share of
errors whose predicted class is a sibling of the true one (against the share a random wrong
class would give), and the superclass confusion matrix, per superclass too.
"""

from __future__ import annotations

from stresslab.metrics.confusion import row_normalized
from stresslab.metrics.superclass import superclass_of, superclass_scores
from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.report.figures import matrix_figure


def superclass_section(res: ProbeResult, ctx: ProbeContext) -> None:
    """Add the superclass metrics, table, figure, summary and data to ``res``; nothing when
    the dataset has no superclasses or the test set is empty."""
    info, coarse = ctx.info, ctx.split.test_coarse
    p = ctx.predictions
    if not info.has_coarse or coarse is None or len(p.labels) == 0:
        return
    assert info.coarse_names is not None and info.coarse_of is not None
    names = list(info.coarse_names)
    s = superclass_scores(p.labels, p.preds, coarse, info.coarse_of, len(names))
    if s.accuracy is not None:
        res.metrics["coarse_accuracy"] = s.accuracy
    if s.within_error_share is not None and s.chance_within_share is not None:
        res.metrics["within_superclass_error_share"] = s.within_error_share
        res.metrics["within_superclass_error_share_chance"] = s.chance_within_share
    res.metrics["n_errors_across_superclasses"] = s.n_errors - s.n_within
    if s.n_unknown:
        res.warnings.append(
            f"{s.n_unknown} test images are predicted as classes with no image in the data, whose "
            "superclass is therefore unknown: they count as superclass errors and are left out of the "
            "superclass confusion matrix"
        )

    cm = s.confusion
    norm = row_normalized(cm)
    wrong = p.preds != p.labels
    same = superclass_of(p.preds, info.coarse_of) == coarse.long()
    rows = []
    for c, name in enumerate(names):
        mine = coarse.long() == c
        n, n_err = int(mine.sum()), int((mine & wrong).sum())
        rows.append(
            [
                name,
                n,
                round(float(norm[c, c]), 4) if n else None,
                round(float((mine & ~wrong).sum()) / n, 4) if n else None,
                n_err,
                round(float((mine & wrong & same).sum()) / n_err, 4) if n_err else None,
            ]
        )
    rows.sort(key=lambda r: (r[2] is None, r[2] if r[2] is not None else 0.0))
    res.tables.append(
        Table(
            "Superclasses (weakest first)",
            ["superclass", "images", "superclass accuracy", "class accuracy", "errors", "errors within"],
            rows,
            caption="Superclass accuracy: the predicted class lies in the true superclass. Errors within: "
            "the share of the superclass's class errors that predict a sibling class. An empty cell: no "
            "such images or errors.",
        )
    )
    res.figures["confusion_superclass"] = matrix_figure(
        norm, names, f"Superclass confusion ({len(names)} superclasses, row-normalized)", fmt=".2f"
    )
    res.captions["confusion_superclass"] = (
        "Row i, column j: share of superclass i's test images whose predicted class lies in superclass j."
    )
    res.data["superclasses"] = {
        "names": names,
        "class_superclass": list(info.coarse_of),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": norm.tolist(),
    }
    if s.accuracy is None:
        return
    line = f"Superclass accuracy {s.accuracy:.2%} ({len(names)} superclasses)"
    if s.within_error_share is not None and s.chance_within_share is not None:
        line += (
            f"; {s.within_error_share:.1%} of the {s.n_errors} errors predict a class of the true "
            f"superclass, against {s.chance_within_share:.1%} for a wrong class drawn at random: "
            + (
                "the errors cluster among similar fine-grained categories."
                if s.within_error_share > s.chance_within_share
                else "the errors do not cluster within superclasses."
            )
        )
    else:
        line += "; no class errors."
    res.summary.append(line)
