"""One adapter per probe: its saved record -> per-image evidence columns.

Every column is an array over the run's test positions (rows of ``predictions.npz``;
``index[pos]`` is the official test-set index). A value a probe did not measure is empty
(``None`` or NaN), never invented. Each adapter takes a probe's saved record (the dict in
``results/<probe>.json``: ``data``, ``metrics``, ``offer``) and returns the columns it can
fill; :func:`collect` runs those whose probe ran and notes which evidence is missing.

Corruption and adversarial records give, per image of their samples, the smallest severity
or epsilon at which the prediction changed from the clean one (for a failure: from one wrong
class to another class); an image outside their samples, or one no step changed, stays empty.

The columns an adapter may fill are declared in :mod:`stresslab.diagnosis.records`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from stresslab.diagnosis.image_stats import DAMAGE_SIDES, PROPERTIES, image_properties, unit_pixels
from stresslab.diagnosis.novelty import (
    combined,
    measured_positions,
    percentile_among,
    pixel_distance,
    runner_up_typical,
)
from stresslab.diagnosis.records import Evidence, TestSet

Adapter = Callable[[Mapping[str, Any], TestSet, Evidence], None]


def label_issues(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``label_issues``: flagged test labels (every searched image gets True or False)."""
    test = rec.get("data", {}).get("test")
    if not test:
        ev.missing["label_issue"] = "label_issues did not search the test set"
        return
    n, pos = len(t.labels), t.positions()
    flag = ev.column("label_issue", n)
    flag[:] = False
    quality, suggested = ev.column("label_quality", n), ev.column("suggested_label", n)
    for r in test.get("issues", []):
        p = pos.get(int(r["index"]))
        if p is not None:
            flag[p] = True
            quality[p] = float(r["score"])
            suggested[p] = t.class_names[int(r["suggested"])]


def representation(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``representation``: neighbour label shares and near-duplicates of every failure.

    A near-duplicate is the nearest training image when its cosine similarity is at least
    the probe's ``near_duplicate_threshold``; its label is kept when it differs from the true one.
    """
    data = rec.get("data", {})
    failures = data.get("failures")
    if failures is None:
        ev.missing["knn_share_true"] = "representation recorded no neighbours (no embeddings)"
        return
    near = float(data.get("settings", {}).get("near_duplicate_threshold", 0.99))
    ev.thresholds["near_duplicate_similarity"] = near
    k = len(failures[0]["neighbour_labels"]) if failures else 0
    if k:
        ev.thresholds["neighbours_k"] = k
    n, pos = len(t.labels), t.positions()
    cols = {
        c: ev.column(c, n)
        for c in ("knn_share_true", "knn_share_pred", "nearest_train_index", "duplicate_label")
    }
    for r in failures:
        p = pos.get(int(r["index"]))
        if p is None:
            continue
        cols["knn_share_true"][p] = float(r["share_true"])
        cols["knn_share_pred"][p] = float(r["share_pred"])
        if r["neighbour_train_index"]:
            cols["nearest_train_index"][p] = int(r["neighbour_train_index"][0])
            first = int(r["neighbour_labels"][0])
            if 1.0 - float(r["neighbour_distances"][0]) >= near and first != int(r["true"]):
                cols["duplicate_label"][p] = t.class_names[first]


def shortcut(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``shortcut``: whether a proven shortcut region of the predicted class holds that
    class's pattern (the median training patch there, within the probe's ``match_tolerance``
    in mean absolute pixel difference on [0, 1])."""
    data = rec.get("data", {})
    if t.images is None or t.train_images is None or t.train_labels is None:
        ev.missing["shortcut_present"] = "the test or training images were not available"
        return
    n = len(t.labels)
    present = ev.column("shortcut_present", n)
    present[:] = False
    tol = float(data.get("settings", {}).get("match_tolerance", 0.1))
    ev.thresholds["shortcut_match_tolerance"] = tol
    preds = t.preds
    for s in data.get("shortcuts", []):
        cls, b = int(s["class"]), s["box"]
        rows, cols = slice(b["top"], b["top"] + b["height"]), slice(b["left"], b["left"] + b["width"])
        donors = unit_pixels(t.train_images[t.train_labels == cls][:, :, rows, cols])
        if not len(donors):
            continue
        reference = np.median(donors, axis=0)
        patches = unit_pixels(t.images[:, :, rows, cols])
        match = np.abs(patches - reference).reshape(n, -1).mean(axis=1) <= tol
        present[match & (preds == cls)] = True


def explain(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``explain``: share of the first method's attribution on plain background, for the
    explained cases that recorded it."""
    cases = rec.get("data", {}).get("cases", [])
    methods = rec.get("data", {}).get("settings", {}).get("methods", [])
    n, pos = len(t.labels), t.positions()
    col = ev.column("background_attribution", n)
    for c in cases:
        p = pos.get(int(c["index"]))
        for m in methods:
            share = (c.get(m) or {}).get("background_share")
            if p is not None and isinstance(share, (int, float)) and math.isfinite(share):
                col[p] = float(share)
                break


def _per_image(
    t: TestSet, ev: Evidence, index: list[Any], values: list[Any], names: list[Any], cols: tuple[str, str]
) -> None:
    """Fill two columns from per-image lists keyed by official test ``index`` (None: empty)."""
    n, pos = len(t.labels), t.positions()
    strength, name = ev.column(cols[0], n), ev.column(cols[1], n)
    for i, v, m in zip(index, values, names, strict=False):
        p = pos.get(int(i))
        if p is not None and v is not None:
            strength[p], name[p] = v, m


def corruption(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``corruption``: the smallest severity that changed each sampled image's prediction."""
    data = rec.get("data", {})
    if "flip_severity" not in data:
        ev.missing["corruption_flip_severity"] = "the corruption record has no per-image changes"
        return
    cols = ("corruption_flip_severity", "corruption_flip")
    _per_image(t, ev, data.get("test_index", []), data["flip_severity"], data["flip_corruption"], cols)


def adversarial(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``adversarial``: the smallest epsilon that changed each attacked image's prediction
    (L-inf where it ran, else the first norm recorded)."""
    data = rec.get("data", {})
    eps, attack = data.get("flip_epsilon") or {}, data.get("flip_attack") or {}
    norm = "linf" if "linf" in eps else next(iter(eps), None)
    if norm is None:
        ev.missing["attack_flip_epsilon"] = "the adversarial record has no per-image changes"
        return
    cols = ("attack_flip_epsilon", "attack_flip")
    _per_image(t, ev, data.get("index", []), eps[norm], attack.get(norm, []), cols)
    ev.notes["attack_flip_epsilon"] = norm


#: Energy first (Liu et al. 2020): on handwritten digits planted among Fashion-MNIST's test
#: images it separated them from the model's ordinary errors best (AUROC 0.93 against kNN
#: 0.91, Mahalanobis 0.90, MSP 0.86; benchmarks/bench_diagnosis.py --quick).
OOD_PREFERENCE = ("energy", "knn", "mahalanobis", "max_logit", "msp")


def ood(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``ood`` (its ``OodScores`` offer): the score (first of :data:`OOD_PREFERENCE` that
    it recorded) and its percentile among the correctly classified test images it scored."""
    offer = rec.get("offer") or {}
    scores = offer.get("scores") or {}
    name = next((s for s in OOD_PREFERENCE if s in scores), None)
    if name is None:
        ev.missing["ood_score"] = "the ood probe recorded no per-image scores"
        return
    n, pos = len(t.labels), t.positions()
    rows = [
        (pos[int(i)], float(v))
        for i, v in zip(offer.get("index", []), scores[name], strict=False)
        if int(i) in pos
    ]
    if not rows:
        return
    where = np.array([r[0] for r in rows])
    values = np.array([r[1] for r in rows])
    score, pct = ev.column("ood_score", n), ev.column("ood_percentile", n)
    score[where] = values
    pct[where] = _objects(percentile_among(values, values[t.correct[where]]))
    ev.notes["ood_score"] = name
    if name != "knn" and "knn" in scores:  # the feature-space witness beside the logit one
        knn = np.full(n, np.nan)
        for i, v in zip(offer.get("index", []), scores["knn"], strict=False):
            if int(i) in pos:
                knn[pos[int(i)]] = float(v)
        ev.column("feature_distance_percentile", n)[:] = _objects(percentile_among(knn, knn[t.correct]))


#: data_audit issues that are about image quality (not duplicates or colour mode).
QUALITY_ISSUES = ("dark", "light", "low_contrast", "low_information", "blurry")


def data_audit(rec: Mapping[str, Any], t: TestSet, ev: Evidence) -> None:
    """``data_audit`` (its ``AuditFlags`` offer): the image-quality issues it flagged on each
    test image of its sample, fenced on the training images' own distribution (Tukey fences).

    Kept as evidence beside ``quality_flags``, which decides: on the planted faults its
    far-out fences missed half the damaged images and flagged half the images of no class
    as blurry (recall 0.50, precision 0.45 against 1.00 and 0.76 for the percentile flags).
    """
    offer = rec.get("offer") or {}
    issues = offer.get("issues")
    if issues is None:
        return
    n, pos = len(t.labels), t.positions()
    flags = ev.column("audit_flags", n)
    flags[:] = ""
    for issue in QUALITY_ISSUES:
        for i in issues.get(issue, []):
            p = pos.get(int(i))
            if p is not None:
                flags[p] = issue if not flags[p] else f"{flags[p]}; {issue}"
    for k, v in (offer.get("thresholds") or {}).items():
        ev.thresholds[f"data_audit_{k}"] = float(v)


ADAPTERS: dict[str, tuple[Adapter, tuple[str, ...]]] = {
    "ood": (ood, ("ood_score", "ood_percentile", "feature_distance_percentile")),
    "data_audit": (data_audit, ("audit_flags",)),
    "label_issues": (label_issues, ("label_issue", "label_quality", "suggested_label")),
    "representation": (
        representation,
        ("knn_share_true", "knn_share_pred", "nearest_train_index", "duplicate_label"),
    ),
    "shortcut": (shortcut, ("shortcut_present",)),
    "explain": (explain, ("background_attribution",)),
    "corruption": (corruption, ("corruption_flip_severity", "corruption_flip")),
    "adversarial": (adversarial, ("attack_flip_epsilon", "attack_flip")),
}


def _outside_class_range(
    values: np.ndarray, t: TestSet, ok: np.ndarray, tail: float, sides: tuple[str, ...] = ("low", "high")
) -> np.ndarray:
    """Per image: outside the central range of the correctly classified images of its given
    class and of its predicted class, on the ``sides`` that count (a class with fewer than 20
    such images gives no range, so it does not hold a value back)."""
    n = len(values)
    out_given, out_pred = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    preds = t.preds
    for c in np.unique(np.concatenate([t.labels, preds])):
        ref = values[ok & (t.labels == c)]
        if len(ref) < 20:
            continue
        lo, hi = np.percentile(ref, [tail, 100 - tail])
        outside = ((values < lo) & ("low" in sides)) | ((values > hi) & ("high" in sides))
        out_given[t.labels == c] = outside[t.labels == c]
        out_pred[preds == c] = outside[preds == c]
    return out_given & out_pred


def quality(t: TestSet, ev: Evidence, tail: float) -> None:
    """Image properties of every test image and the flags of those outside the central
    ``100 - 2 * tail`` percent of the correctly classified images' range, overall and among
    those of both its given and its predicted class (a bright bag is no damaged image when
    bags are bright)."""
    if t.images is None:
        ev.missing["quality_flags"] = "the test images were not available"
        return
    props = image_properties(t.images, t.background)
    n, ok = len(t.labels), t.correct
    flags = ev.column("quality_flags", n)
    for name in PROPERTIES:
        values = props[name]
        col = ev.column(name, n)
        finite = np.isfinite(values)
        col[finite] = values[finite]
        ref = values[ok & finite]
        sides = DAMAGE_SIDES.get(name, ())
        if not sides or len(ref) < 20:
            continue  # object area describes slices; too few correct images give no range
        lo, hi = np.percentile(ref, [tail, 100 - tail])
        for side in sides:
            ev.thresholds[f"{name}_{side}"] = float(lo if side == "low" else hi)
        lo, hi = (lo if "low" in sides else -np.inf), (hi if "high" in sides else np.inf)
        outside = finite & ((values < lo) | (values > hi)) & _outside_class_range(values, t, ok, tail, sides)
        for p in np.flatnonzero(outside):
            word = f"{'low' if values[p] < lo else 'high'} {name}"
            flags[p] = word if flags[p] is None else f"{flags[p]}; {word}"
    if len(t.labels):
        flags[np.array([f is None for f in flags])] = ""


def _objects(values: np.ndarray) -> np.ndarray:
    """Floats as an object array with ``None`` for NaN (an empty cell)."""
    return np.array([None if not np.isfinite(v) else float(v) for v in values], dtype=object)


def _floats(ev: Evidence, name: str, n: int) -> np.ndarray | None:
    col = ev.columns.get(name)
    if col is None or all(v is None for v in col):
        return None
    return np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)


def given_label(t: TestSet, ev: Evidence) -> None:
    """The model's probability of each given label, and the 75th percentile of the
    probabilities correctly classified images give their runner-up class (the label-error
    rule's cut)."""
    n = len(t.labels)
    if not n:
        return
    ev.column("given_label_probability", n)[:] = _objects(t.probs[np.arange(n), t.labels].astype(np.float64))
    typical = runner_up_typical(t.probs, t.correct)
    if typical is not None:
        ev.thresholds["runner_up_probability_p75"] = typical


def novelty(t: TestSet, ev: Evidence, seed: int) -> None:
    """The pixel-space distance witness and the combined novelty percentile (see
    :mod:`stresslab.diagnosis.novelty`) from every OOD witness measured."""
    n = len(t.labels)
    if t.images is not None and t.train_images is not None and n:
        which = measured_positions(t.correct, seed)
        dist = pixel_distance(t.images, t.train_images, which, seed)
        ev.column("pixel_distance_percentile", n)[:] = _objects(percentile_among(dist, dist[t.correct]))
        form = pixel_distance(t.images, t.train_images, which, seed, shape=True)
        ev.column("shape_distance_percentile", n)[:] = _objects(percentile_among(form, form[t.correct]))
    else:
        ev.missing["pixel_distance_percentile"] = "the test or training images were not available"
        ev.missing["shape_distance_percentile"] = "the test or training images were not available"
    names = (
        "ood_percentile",
        "feature_distance_percentile",
        "pixel_distance_percentile",
        "shape_distance_percentile",
    )
    witnesses = {k: v for k in names if (v := _floats(ev, k, n)) is not None}
    if not witnesses:
        ev.missing["novelty_percentile"] = "no out-of-distribution witness was measured"
        return
    _, pct = combined(list(witnesses.values()), t.correct)
    ev.column("novelty_percentile", n)[:] = _objects(pct)
    ev.notes["novelty_percentile"] = "Fisher's combination of " + ", ".join(witnesses)


def collect(
    records: Mapping[str, Mapping[str, Any]], t: TestSet, *, quality_tail: float = 0.5, seed: int = 0
) -> Evidence:
    """Every adapter whose probe has a record in ``records`` (probe name -> saved record);
    the columns of probes that did not run stay empty and are named in ``missing``."""
    ev = Evidence()
    for probe, (adapter, names) in ADAPTERS.items():
        if probe in records:
            adapter(records[probe], t, ev)
        else:
            for name in names:
                ev.missing.setdefault(name, f"the {probe} probe did not run")
    quality(t, ev, quality_tail)
    given_label(t, ev)
    novelty(t, ev, seed)
    return ev
