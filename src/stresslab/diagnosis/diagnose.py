"""The diagnosis step: evidence of every probe joined per failure, one cause each, slices."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from stresslab.diagnosis.evidence import collect
from stresslab.diagnosis.image_stats import PROPERTIES
from stresslab.diagnosis.records import COLUMNS, TestSet
from stresslab.diagnosis.rules import CAUSES, Thresholds, decide
from stresslab.diagnosis.slices import embedding_slices, pair_slices


@dataclass
class Diagnosis:
    """One row per misclassified test image (most confident first; keys: ``index``,
    ``true``, ``predicted`` (class names), ``confidence`` in [0, 1], ``cause``, then every
    evidence column, ``None`` where empty; ``position`` is the row in the run's test
    predictions), the thresholds the rules used, the evidence left empty and why, the
    count per cause, and the slices."""

    rows: list[dict[str, Any]]
    n_test: int
    thresholds: dict[str, float]
    missing: dict[str, str]
    counts: dict[str, int]
    pairs: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    cluster_settings: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def _thresholds(base: Thresholds, found: dict[str, float]) -> Thresholds:
    """Two of the k nearest training images when the representation probe's k is known; the
    given-label cut from the correctly classified images' runner-up probability."""
    k = found.get("neighbours_k")
    th = replace(base, neighbour_share=2.0 / k) if k else base
    typical = found.get("runner_up_probability_p75")
    if typical is None or th.given_label_below is not None:
        return th
    return replace(th, given_label_below=typical)


def diagnose(
    records: Mapping[str, Mapping[str, Any]],
    test: TestSet,
    *,
    thresholds: Thresholds | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Diagnose every misclassified image of ``test`` from the probes' saved ``records``
    (probe name -> the dict saved as ``results/<probe>.json``; a probe that did not run
    or failed is absent). Cost: one pass over the test images plus k-means on the test
    embeddings, when given."""
    base = thresholds or Thresholds()
    ev = collect(records, test, quality_tail=base.quality_tail, seed=seed)
    th = _thresholds(base, ev.thresholds)
    preds, conf = test.preds, test.probs.max(axis=1)
    wrong = np.flatnonzero(preds != test.labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    rows = []
    for p in wrong.tolist():
        row: dict[str, Any] = {
            "position": p,
            "index": int(test.index[p]),
            "true": test.class_names[int(test.labels[p])],
            "predicted": test.class_names[int(preds[p])],
            "confidence": float(conf[p]),
        }
        for c in COLUMNS:
            v = ev.columns[c.name][p] if c.name in ev.columns else None
            row[c.name] = None if v is None else _typed(v, c.kind)
        row["cause"] = decide(row, th)
        rows.append(row)
    counts = Counter(r["cause"] for r in rows)
    found = {
        **ev.thresholds,
        "ood_percentile": th.ood_percentile,
        "shape_percentile": th.shape_percentile,
        "neighbour_share": th.neighbour_share,
    }
    if th.given_label_below is not None:
        found["given_label_below"] = th.given_label_below
    found["quality_tail_percent"] = th.quality_tail
    d = Diagnosis(
        rows=rows,
        n_test=len(test.labels),
        thresholds=found,
        missing={k: v for k, v in ev.missing.items() if k not in ev.columns or _empty(ev.columns[k])},
        counts={c: counts.get(c, 0) for c in CAUSES},
        pairs=pair_slices(rows),
        sources=dict(ev.notes),
    )
    if test.embeddings is not None:
        props = {name: _floats(ev.columns.get(name), len(test.labels)) for name in PROPERTIES}
        d.clusters, d.cluster_settings = embedding_slices(
            test.embeddings, preds != test.labels, test.labels, test.class_names, props, seed=seed
        )
    else:
        d.cluster_settings = {"skipped": "no test embeddings"}
    return d


def _typed(v: Any, kind: str) -> Any:
    if kind == "float":
        return float(v)
    if kind == "int":
        return int(v)
    if kind == "bool":
        return bool(v)
    return str(v)


def _empty(col: np.ndarray) -> bool:
    return all(v is None for v in col)


def _floats(col: np.ndarray | None, n: int) -> np.ndarray:
    if col is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)
