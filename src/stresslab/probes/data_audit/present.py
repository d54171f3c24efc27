"""The ``data_audit`` probe's report parts: the issue table with the error-rate test, the
duplicates, the class balance and the galleries."""

from __future__ import annotations

import math

import torch
from scipy.stats import fisher_exact
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.probes.data_audit.duplicates import Pair
from stresslab.probes.data_audit.flags import Fence
from stresslab.report.figures import image_gallery

IMBALANCE_SHARE = 0.5  # a class with fewer than half the median class's images is flagged


def error_test(flags: Tensor, correct: Tensor) -> tuple[float | None, float | None, float | None]:
    """Error rate on flagged and on other images (None where empty) and the two-sided p-value
    of Fisher's exact test on the 2 x 2 table (flagged?, error?) (None where a side is empty)."""
    f, c = flags.bool(), correct.bool()
    n_f, n_o = int(f.sum()), int((~f).sum())
    e_f, e_o = int((f & ~c).sum()), int((~f & ~c).sum())
    rate_f = e_f / n_f if n_f else None
    rate_o = e_o / n_o if n_o else None
    if not n_f or not n_o:
        return rate_f, rate_o, None
    _, p = fisher_exact([[e_f, n_f - e_f], [e_o, n_o - e_o]])
    return rate_f, rate_o, float(p)


def issue_table(
    res: ProbeResult,
    limits: dict[str, Fence],
    train_flags: dict[str, Tensor],
    test_issues: dict[str, Tensor],
    correct: Tensor,
    n_train: int,
) -> None:
    """One row per issue: threshold, counts per split, test error rate flagged vs other, p."""
    rows = []
    n_test = len(correct)
    for issue, flags in test_issues.items():
        rate_f, rate_o, p = error_test(flags, correct)
        f = limits.get(issue)
        rule = f"{f.property} {'<' if f.side == 'low' else '>'} {f.value:.4g}" if f else _RULES.get(issue, "")
        n_tr = int(train_flags[issue].sum()) if issue in train_flags else None
        rows.append([issue, rule, n_tr, int(flags.sum()), rate_f, rate_o, p])
        res.metrics[f"{issue}.test"] = int(flags.sum())
        if n_tr is not None:
            res.metrics[f"{issue}.train"] = n_tr
        if rate_f is not None:
            res.metrics[f"{issue}.test_error_rate"] = rate_f
        if p is not None:
            res.metrics[f"{issue}.fisher_p"] = p
            if p < 0.01 and rate_f is not None and rate_o is not None and rate_f > rate_o:
                res.summary.append(
                    f"Test images flagged {issue} are misclassified more often "
                    f"({rate_f:.1%} vs {rate_o:.1%}, "
                    f"Fisher's exact test p = {p:.2g}): this issue is hurting the model."
                )
    res.tables.append(
        Table(
            "Data issues per split, and whether they hurt the model",
            [
                "issue",
                "rule",
                f"train (of {n_train})",
                f"test (of {n_test})",
                "test error rate flagged",
                "test error rate other",
                "Fisher p",
            ],
            rows,
            caption="Thresholds are Tukey far fences (Q1 - 3 IQR or Q3 + 3 IQR) of the training sample. "
            "Fisher's exact test compares the error rate of flagged and other test images.",
        )
    )


_RULES = {
    "grayscale": "3 channels within 2 levels at every pixel",
    "exact_duplicate": "equal pixels to another test image",
    "near_duplicate": "gray 16 x 16 signature correlation >= near_threshold with another test image",
    "leaked_from_train": "exact or near copy of a training image",
    "leaked_other_label": "a copy of a training image with another label",
}


def duplicate_section(res: ProbeResult, ctx: ProbeContext, dups: dict[str, list[Pair]]) -> None:
    """Counts of each kind of duplicate with the same or another label, and a warning for leaks."""
    rows = []
    for kind, pairs in dups.items():
        same = sum(p.same_label for p in pairs)
        rows.append([kind, len(pairs), same, len(pairs) - same])
        res.metrics[f"duplicates.{kind}"] = len(pairs)
        res.data[f"duplicates.{kind}"] = [vars(p) for p in pairs[:200]]
    res.tables.append(
        Table(
            "Duplicate pairs",
            ["kind:split", "pairs", "same label", "other label"],
            rows,
            caption="exact: whole sets, equal uint8 pixels; near: the samples, signature correlation >= "
            "near_threshold (a pair of a group of copies counts once per extra copy).",
        )
    )
    leaked = dups["exact:test-train"]
    if leaked:
        other = sum(not p.same_label for p in leaked)
        res.warnings.append(
            f"{len(leaked)} test images are exact pixel copies of training images ({other} with another "
            "label): the model saw them in training, so they inflate test accuracy."
        )


def class_balance(res: ProbeResult, ctx: ProbeContext) -> None:
    """Images per class in each split; classes under half the median count are flagged."""
    names = list(ctx.info.class_names)
    k = len(names)
    tr = torch.bincount(ctx.split.train_y, minlength=k)
    te = torch.bincount(ctx.split.test_y, minlength=k)
    med = float(tr.double().median())
    rare = [names[i] for i in range(k) if tr[i] < IMBALANCE_SHARE * med]
    ratio = float(tr.max()) / float(tr.min()) if int(tr.min()) > 0 else math.inf
    if math.isfinite(ratio):
        res.metrics["imbalance_ratio"] = ratio
    res.tables.append(
        Table(
            "Class balance",
            ["class", "train", "test", "flagged"],
            [[names[i], int(tr[i]), int(te[i]), names[i] in rare] for i in range(k)],
            caption=f"Largest / smallest training class: {ratio:.2f}. Flagged: fewer than "
            f"{IMBALANCE_SHARE:.0%} of the median class's {med:.0f} training images.",
        )
    )
    if rare:
        res.summary.append(f"Under-represented classes in training: {', '.join(rare)}.")


def size_note(res: ProbeResult, ctx: ProbeContext) -> None:
    """Odd sizes or aspect ratios cannot be measured once the loader has resized every image."""
    i = ctx.info
    res.data["not_measured"] = ["odd_size", "odd_aspect_ratio"]
    res.summary.append(
        f"Image sizes and aspect ratios are not audited: every image reaches the audit at "
        f"{i.channels} x {i.height} x {i.width}, as the loader converted it."
    )


def gallery(
    res: ProbeResult,
    ctx: ProbeContext,
    tr_pos: Tensor,
    te_pos: Tensor,
    tr_flags: dict[str, Tensor],
    te_flags: dict[str, Tensor],
    size: int,
) -> None:
    """Up to ``size`` flagged images per issue (test first, then training)."""
    if size <= 0:
        return
    images, titles = [], []
    for issue, flags in te_flags.items():
        picks = [("test", int(te_pos[i])) for i in torch.nonzero(flags).flatten().tolist()[:size]]
        if issue in tr_flags and len(picks) < size:
            more = torch.nonzero(tr_flags[issue]).flatten().tolist()[: size - len(picks)]
            picks += [("train", int(tr_pos[i])) for i in more]
        for split, pos in picks:
            x = ctx.split.test_x if split == "test" else ctx.split.train_x
            index = ctx.split.test_index if split == "test" else ctx.split.train_index
            images.append(to_float(x[pos]))
            titles.append(f"{issue[:15]}\n{split} #{int(index[pos])}")
    if images:
        res.figures["flagged"] = image_gallery(
            torch.stack(images), titles, ncols=size, suptitle="Flagged images"
        )
        res.captions["flagged"] = f"Up to {size} images per issue, test images first."
