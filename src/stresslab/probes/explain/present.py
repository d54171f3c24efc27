"""The explain probe's metrics, tables, summary and warnings, from its typed results.

An undefined value is left out of the metrics and shown as ``None`` (a dash) in tables,
with a warning or caption that says why; it never becomes a number.
"""

from __future__ import annotations

from typing import Any

from stresslab.probes.base import ProbeResult, Table
from stresslab.probes.explain.cases import CHOSEN, CORRECT, HIGH_CONFIDENCE, UNCERTAIN
from stresslab.probes.explain.checks import Checks, Faithfulness, MethodChecks, finite_mean
from stresslab.probes.explain.compute import Explained
from stresslab.probes.explain.settings import ExplainSettings

DASH_NOTE = "A dash marks an undefined value (see the warnings)."


def fmt(value: float | None, pct: bool = False) -> str | None:
    """A table cell: ``None`` for an undefined value, else 3 decimals or a percentage."""
    if value is None:
        return None
    return f"{100 * value:.0f}%" if pct else f"{value:.3f}"


def words(value: float | None, spec: str = ".2f") -> str:
    """A number for a sentence: ``"undefined"`` when it is."""
    return "undefined" if value is None else format(value, spec)


def put(metrics: dict[str, float], key: str, value: float | None) -> None:
    """Set ``metrics[key]`` unless ``value`` is undefined (then the key stays absent)."""
    if value is not None:
        metrics[key] = value


def verdict(c: MethodChecks) -> str:
    """ "pass", or "fail: " and what failed or could not be shown."""
    if c.passed:
        return "pass"
    why = []
    if not c.faithfulness.faithful:
        why.append("not faithful" if c.faithfulness.p_value is not None else "faithfulness test undefined")
    if not c.sanity.passed:
        why.append("fails randomization" if c.sanity.spearman is not None else "randomization test undefined")
    return "fail: " + ", ".join(why)


def method_notes(
    res: ProbeResult, label: str, c: MethodChecks, checks: Checks, n: int, settings: ExplainSettings
) -> None:
    """Summary sentence and warnings of one method."""
    f, s = c.faithfulness, c.sanity
    if c.deletion_auc is None or c.insertion_auc is None:
        res.warnings.append(
            f"{label}: the model's probabilities on the deletion/insertion curves are not finite; "
            "the undefined AUCs are left out of the metrics"
        )
    if s.n_undefined and s.spearman is not None:
        res.warnings.append(
            f"{label}: {s.n_undefined} of {n} maps are constant ({s.n_constant_trained} on the "
            f"trained model, {s.n_undefined - s.n_constant_trained} on the randomized copy only); "
            "their rank correlation is undefined and left out"
        )
    elif s.spearman is None:
        res.warnings.append(
            f"{label}: all {n} maps are constant on the trained or the randomized model, so the rank "
            "correlation of the randomization test is undefined: left out of the metrics and not a pass"
        )
    if f.p_value is None:
        res.warnings.append(
            f"{label}: the faithfulness test is undefined ({f.why}); its p-value is left out of the "
            "metrics and the method is not counted as faithful"
        )
    better = "more" if f.faithful else "not shown to be more"
    test = f"p = {f.p_value:.3g}" if f.p_value is not None else f"undefined: {f.why}"
    res.summary.append(
        f"{label} maps are {better} faithful than random: they beat random maps on "
        f"{f.wins} of {f.n} images, mean gain {gain_text(f)} (one-sided Wilcoxon signed-rank {test}; "
        f"deletion AUC {words(c.deletion_auc)} vs {words(checks.random_deletion_auc)}, "
        f"insertion AUC {words(c.insertion_auc)} vs {words(checks.random_insertion_auc)}; "
        "lower deletion and higher insertion are better)."
    )
    if not s.passed and s.spearman is not None:
        res.warnings.append(
            f"{label} fails the randomization test: its maps barely change when the model's "
            f"weights are randomized (rank correlation {fmt(s.spearman)} >= "
            f"{settings.randomization_threshold}); "
            "they show the image more than the model"
        )


def gain_text(f: Faithfulness) -> str:
    """The mean gain over random with its 95% CI, for a sentence or a cell."""
    if f.gain is None:
        return "undefined"
    ci = f" (95% CI {f.ci[0]:+.3f} to {f.ci[1]:+.3f})" if f.ci is not None else ""
    return f"{f.gain:+.3f}{ci}"


def ranking_note(res: ProbeResult, explained: Explained, checks: Checks) -> None:
    """The methods ranked by faithfulness, and a plain sentence when none beats random."""
    order = checks.ranking
    labels = [explained.methods[name].method.label for name in order]
    faithful = [name for name in order if checks.methods[name].faithfulness.faithful]
    res.data["ranking"] = order
    for rank, name in enumerate(order, start=1):
        res.metrics[f"{name}.faithfulness_rank"] = float(rank)
    if not faithful:
        res.summary.append(
            "No method beats random pixel orders on deletion and insertion here: none of these maps "
            "is shown to point at what the model uses, so read them as pictures, not evidence."
        )
    else:
        res.summary.append(
            "Methods ranked by faithfulness (mean gain over random; the galleries follow this order): "
            + ", ".join(labels)
            + "."
        )


def present(
    res: ProbeResult,
    explained: Explained,
    checks: Checks,
    settings: ExplainSettings,
    quality: Explained | None = None,
) -> None:
    """Write the metrics, tables, summary and warnings into ``res``: ``explained`` are the
    cases shown, ``quality`` the images the ``checks`` were measured on (the cases when
    ``None``)."""
    quality = explained if quality is None else quality
    kinds = [c.kind for c in explained.cases]
    n = len(kinds)
    if CHOSEN in kinds:
        n_err = int(explained.is_error.sum())
        listed = ", ".join(str(c.index) for c in explained.cases)
        res.summary.append(
            f"Explained the {n} test images chosen by index ({listed}): "
            f"{n_err} errors and {n - n_err} correct predictions."
        )
    else:
        res.summary.append(
            f"Explained {n} test images: {kinds.count(HIGH_CONFIDENCE)} high-confidence errors, "
            f"{kinds.count(UNCERTAIN)} uncertain predictions and {kinds.count(CORRECT)} correct predictions."
        )
    if quality is not explained:
        res.summary.append(
            f"The quality checks below ran on a separate seeded sample of {len(quality.cases)} test "
            "images (shared with the other probes that sample), not only on these cases."
        )
    n = len(quality.cases)
    ranking_note(res, explained, checks)
    r_del, r_ins = checks.random_deletion_auc, checks.random_insertion_auc
    put(res.metrics, "random.deletion_auc", r_del)
    put(res.metrics, "random.insertion_auc", r_ins)
    rows: list[list[Any]] = []
    bg_rows: list[list[Any]] = []
    for name in checks.ranking:
        c = checks.methods[name]
        label = explained.methods[name].method.label
        put(res.metrics, f"{name}.deletion_auc", c.deletion_auc)
        put(res.metrics, f"{name}.insertion_auc", c.insertion_auc)
        put(res.metrics, f"{name}.randomization_spearman", c.sanity.spearman)
        res.metrics[f"{name}.faithful"] = float(c.faithfulness.faithful)
        put(res.metrics, f"{name}.faithfulness_p", c.faithfulness.p_value)
        res.metrics[f"{name}.faithfulness_wins"] = c.faithfulness.wins
        put(res.metrics, f"{name}.faithfulness_gain", c.faithfulness.gain)
        if c.faithfulness.ci is not None:
            res.metrics[f"{name}.faithfulness_gain_ci_low"] = c.faithfulness.ci[0]
            res.metrics[f"{name}.faithfulness_gain_ci_high"] = c.faithfulness.ci[1]
        res.metrics[f"{name}.sanity_pass"] = float(c.sanity.passed)
        method_notes(res, label, c, checks, n, settings)
        rows.append(
            [
                label,
                fmt(c.deletion_auc),
                fmt(r_del),
                fmt(c.insertion_auc),
                fmt(r_ins),
                gain_text(c.faithfulness),
                fmt(c.faithfulness.p_value),
                fmt(c.sanity.spearman),
                verdict(c),
            ]
        )
        if c.background is not None:
            put(res.metrics, f"{name}.background_share_errors", c.background.errors)
            put(res.metrics, f"{name}.background_share_correct", c.background.correct)
            bg_rows.append([label, fmt(c.background.errors, True), fmt(c.background.correct, True)])
    caption = (
        "Deletion/insertion AUC: mean probability of the predicted class as the most-attributed "
        f"pixels are replaced by {settings.curve_fill!s} (deletion) or restored onto it (insertion) "
        "(Petsiuk et al., 2018); random = random pixel order. Rank correlation: Spearman between "
        f"maps of the trained model and of a copy with re-initialized weights "
        f"({settings.randomization}; "
        f"Adebayo et al., 2018); >= {settings.randomization_threshold} fails. Gain: per image, "
        "(random - method) deletion AUC + (method - random) insertion AUC, averaged, with a 95% BCa "
        "bootstrap interval; p: one-sided Wilcoxon signed-rank test that the gain is positive. "
        "Rows: most faithful first."
    )
    res.tables.append(
        Table(
            title="Quality of each explanation method",
            columns=[
                "method",
                "deletion AUC",
                "random deletion AUC",
                "insertion AUC",
                "random insertion AUC",
                "gain over random (95% CI)",
                "p (one-sided)",
                "randomization rank corr.",
                "verdict",
            ],
            rows=rows,
            caption=caption + (" " + DASH_NOTE if _has_none(rows) else ""),
        )
    )
    background(res, quality, checks, settings, bg_rows)


def _has_none(rows: list[list[Any]]) -> bool:
    return any(cell is None for row in rows for cell in row)


def background(
    res: ProbeResult,
    explained: Explained,
    checks: Checks,
    settings: ExplainSettings,
    bg_rows: list[list[Any]],
) -> None:
    """The background-share summary, metrics and tables (nothing without a background)."""
    test = checks.background
    if test is None:
        return
    label = explained.methods[test.method].method.label
    e, c = test.shares.errors, test.shares.correct
    for key, value, who in (
        ("background_share_errors", e, "errors"),
        ("background_share_correct", c, "correct"),
    ):
        put(res.metrics, key, value)
        if value is None:
            res.warnings.append(
                f"background share for {who} is undefined (no such cases with attribution); "
                "left out of the metrics"
            )
    put(res.metrics, "background_share_p", test.p_value)
    if e is not None and c is not None:
        n = len(explained.cases)
        if test.p_value is None:
            finding = "a difference the two-sided Mann-Whitney U test cannot assess here (undefined)"
        elif test.significant:
            finding = f"a difference a two-sided Mann-Whitney U test supports (p = {test.p_value:.3g})"
        else:
            finding = (
                f"a difference these {n} images do not establish "
                f"(two-sided Mann-Whitney U p = {test.p_value:.3g})"
            )
        res.summary.append(
            f"With {label}, errors put {e:.0%} of their attribution on the background "
            f"versus {c:.0%} for correct predictions (the background covers "
            f"{words(test.area.errors, '.0%')} and {words(test.area.correct, '.0%')} "
            f"of those images): {finding}."
        )
    dash = " A dash: no such cases, or no positive attribution on them."
    res.tables.append(
        Table(
            title="Share of attribution on the background, errors vs correct",
            columns=["method", "errors", "correct"],
            rows=bg_rows,
            caption=(
                "Mean share of positive attribution on background pixels (all channels within "
                f"{settings.background_tolerance} of the dataset's background value). Background area: "
                f"{fmt(test.area.errors, True) or 'undefined (no such images)'} of error images, "
                f"{fmt(test.area.correct, True) or 'undefined (no such images)'} of correct ones."
                + (dash if _has_none(bg_rows) else "")
            ),
        )
    )
    share = explained.methods[test.method].background_share
    assert share is not None
    is_err, true = explained.is_error, explained.true
    per_class: list[list[Any]] = []
    for k in sorted(set(true.tolist())):
        sel = true == k
        ne, nc = int((sel & is_err).sum()), int((sel & ~is_err).sum())
        per_class.append(
            [
                explained.class_names[k],
                ne,
                fmt(finite_mean(share[sel & is_err]), True),
                nc,
                fmt(finite_mean(share[sel & ~is_err]), True),
            ]
        )
    res.tables.append(
        Table(
            title=f"Background share per true class ({label})",
            columns=["true class", "errors", "share (errors)", "correct", "share (correct)"],
            rows=per_class,
            caption="A few cases per class: read as a pointer, not a measurement."
            + (dash if _has_none(per_class) else ""),
        )
    )
