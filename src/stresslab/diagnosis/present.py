"""The diagnosis as the report shows it: at most 7 findings ranked by the share of errors
they explain (each with up to 8 cases, its numbers and what to try), a summary of at most
10 lines, and tables of the thresholds, the missing evidence and the slices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stresslab.diagnosis.diagnose import Diagnosis
from stresslab.diagnosis.records import BY_NAME, TestSet
from stresslab.diagnosis.rules import CAUSES, MEANING
from stresslab.diagnosis.table import ALL_COLUMNS
from stresslab.probes.base import ProbeResult, Table
from stresslab.report.figures import image_gallery

MAX_FINDINGS = 7
GALLERY = 8


def _top_pairs(rows: list[dict[str, Any]], n: int = 3) -> str:
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["true"], r["predicted"])] = counts.get((r["true"], r["predicted"]), 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{t} → {q} ({c})" for (t, q), c in top)


def findings(d: Diagnosis) -> list[dict[str, Any]]:
    """Up to :data:`MAX_FINDINGS` findings, most errors first: one per cause that has
    failures, and one per weak embedding slice. Each has ``title``, ``kind`` (the cause, or
    ``slice``), ``n``, ``share`` of all errors, ``numbers``, ``try`` and ``positions``."""
    total = len(d.rows) or 1
    out: list[dict[str, Any]] = []
    for cause in CAUSES:
        rows = [r for r in d.rows if r["cause"] == cause]
        if not rows:
            continue
        meaning, action = MEANING[cause]
        conf = float(np.mean([r["confidence"] for r in rows]))
        out.append(
            {
                "title": f"{cause.replace('_', ' ')}: {meaning}",
                "kind": cause,
                "n": len(rows),
                "share": len(rows) / total,
                "numbers": f"{len(rows)} failures, mean confidence {conf:.2f}; top pairs {_top_pairs(rows)}",
                "try": action,
                "positions": [r["position"] for r in rows[:GALLERY]],
            }
        )
    for s in d.clusters:
        mix = ", ".join(f"{name} {share:.0%}" for name, share in s["classes"])
        props = ", ".join(
            f"{k} {s[k]:.2f}" for k in ("brightness", "contrast", "object_area") if s.get(k) is not None
        )
        out.append(
            {
                "title": f"weak slice {s['cluster']} of the embedding space ({mix})",
                "kind": "slice",
                "n": s["errors"],
                "share": s["errors"] / total,
                "numbers": (
                    f"{s['errors']} errors in {s['n']} images: error rate {s['error_rate']:.1%}, "
                    f"{s['ratio']:.1f}x the overall rate (p = {s['p_value']:.2g}, Bonferroni); {props}"
                ),
                "try": "collect or weight more training images like these",
                "positions": s["positions"][:GALLERY],
            }
        )
    out.sort(key=lambda f: -f["n"])
    return out[:MAX_FINDINGS]


def summary_lines(d: Diagnosis, found: list[dict[str, Any]]) -> list[str]:
    """At most 10 lines: the failures and their causes, one line per finding, the gaps."""
    n = len(d.rows)
    if n == 0:
        return [f"No test image of {d.n_test} is misclassified: nothing to diagnose."]
    mix = ", ".join(f"{c.replace('_', ' ')} {k / n:.0%}" for c, k in d.counts.items() if k)
    lines = [f"{n} of {d.n_test} test images are misclassified ({n / d.n_test:.1%}); causes: {mix}."]
    for f in found:
        lines.append(f"{f['share']:.0%} of errors: {f['title']}. Try: {f['try']}.")
    gaps = sorted({reason for reason in d.missing.values()})
    if gaps:
        lines.append("Evidence not measured: " + "; ".join(gaps) + ".")
    return lines[:10]


def to_result(d: Diagnosis, test: TestSet) -> ProbeResult:
    """The diagnosis as a :class:`ProbeResult` saved like a probe's (``results/diagnosis.json``)."""
    res = ProbeResult()
    found = findings(d)
    n = len(d.rows)
    res.metrics["n_failures"] = n
    for cause, k in d.counts.items():
        res.metrics[f"n_{cause}"] = k
        res.metrics[f"share_{cause}"] = k / n if n else 0.0
    res.metrics["n_weak_slices"] = len(d.clusters)
    res.summary = summary_lines(d, found)
    for i, f in enumerate(found):
        if test.images is not None and f["positions"]:
            imgs = torch.from_numpy(test.images[f["positions"]])
            titles = [_case_title(d, p) for p in f["positions"]]
            stem = f"finding_{i + 1}"
            res.figures[stem] = image_gallery(imgs, titles, ncols=GALLERY, suptitle=f["title"][:90])
            res.captions[stem] = f"{f['numbers']}. Try: {f['try']}."
            f["figure"] = f"diagnosis/{stem}.png"
    res.tables.append(_threshold_table(d))
    if d.missing:
        res.tables.append(
            Table("Evidence not measured", ["column", "why"], [[k, v] for k, v in sorted(d.missing.items())])
        )
    res.tables.append(
        Table(
            "Failures by true and predicted class and cause",
            ["true", "predicted", "cause", "n"],
            [[s["true"], s["predicted"], s["cause"], s["n"]] for s in d.pairs[:30]],
            caption=f"{len(d.pairs)} groups; the 30 largest. Every failure is in RUN_DIR/diagnosis.csv.",
        )
    )
    res.data = {
        "rules": list(CAUSES),
        "columns": list(ALL_COLUMNS),
        "rows": [{k: r[k] for k in ("position", *ALL_COLUMNS)} for r in d.rows],
        "counts": d.counts,
        "thresholds": d.thresholds,
        "missing": d.missing,
        "sources": d.sources,
        "findings": found,
        "pair_slices": d.pairs,
        "embedding_slices": d.clusters,
        "embedding_slice_settings": d.cluster_settings,
    }
    return res


def _case_title(d: Diagnosis, position: int) -> str:
    r = next(r for r in d.rows if r["position"] == position)
    return f"#{r['index']} {r['true'][:9]}\n→ {r['predicted'][:9]} {r['confidence']:.2f}"


def _threshold_table(d: Diagnosis) -> Table:
    text = {
        "ood_percentile": "OOD: novelty (Fisher's combination of the OOD witnesses' tails) above this "
        "percentile of correctly classified images",
        "shape_percentile": "a novel image with a quality flag and a coarse-shape distance within "
        "this percentile of correct images is a damaged one (image quality), not OOD",
        "given_label_below": "label error: the model's probability of the given label below this",
        "runner_up_probability_p75": "75th percentile of what correct images give their runner-up class",
        "neighbour_share": "ambiguous: each of true and predicted label holds this share of the neighbours",
        "quality_tail_percent": "image quality: percent of correct images left out on each side",
        "near_duplicate_similarity": "near-duplicate: cosine similarity at least",
        "neighbours_k": "neighbours considered (k)",
        "shortcut_match_tolerance": "shortcut present: mean absolute pixel difference at most",
    }
    rows = [
        [
            k,
            v,
            text.get(
                k, f"{BY_NAME[k.rsplit('_', 1)[0]].text} (bound)" if k.rsplit("_", 1)[0] in BY_NAME else ""
            ),
        ]
        for k, v in d.thresholds.items()
    ]
    return Table("Thresholds the rules used (from the data)", ["threshold", "value", "meaning"], rows)
