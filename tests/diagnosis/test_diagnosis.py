"""The diagnosis: rules on constructed evidence, adapters on constructed records, the CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from stresslab.diagnosis import (
    ALL_COLUMNS,
    CAUSES,
    TestSet,
    Thresholds,
    decide,
    diagnose,
    to_result,
    write_csv,
)
from stresslab.diagnosis.evidence import collect
from stresslab.diagnosis.image_stats import image_properties
from stresslab.diagnosis.slices import embedding_slices, pair_slices
from tests.cli_helpers import FAST, run_ok

TH = Thresholds()


def row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"true": "a", "predicted": "b"}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("evidence", "cause"),
    [
        ({"shortcut_present": True, "label_issue": True, "quality_flags": "low brightness"}, "shortcut"),
        ({"quality_flags": "low contrast", "ood_percentile": 50.0, "label_issue": True}, "image_quality"),
        ({"quality_flags": "", "ood_percentile": 99.5, "label_issue": True}, "out_of_distribution"),
        # Novel with a layout no training image has: out of distribution, flagged or not.
        (
            {
                "quality_flags": "low sharpness",
                "novelty_percentile": 100.0,
                "shape_distance_percentile": 99.5,
            },
            "out_of_distribution",
        ),
        # Novel, flagged and familiar in shape: a damaged image of a class.
        (
            {"quality_flags": "low contrast", "novelty_percentile": 100.0, "shape_distance_percentile": 60.0},
            "image_quality",
        ),
        (  # at the shape cut (the 90th percentile): still familiar
            {"quality_flags": "low contrast", "novelty_percentile": 99.5, "shape_distance_percentile": 90.0},
            "image_quality",
        ),
        (  # an unusual shape short of the extreme: a blurry image of no class stays novel
            {"quality_flags": "low sharpness", "novelty_percentile": 99.5, "shape_distance_percentile": 95.0},
            "out_of_distribution",
        ),
        # Novel and unflagged: out of distribution whatever its shape.
        (
            {"quality_flags": "", "novelty_percentile": 99.5, "shape_distance_percentile": 20.0},
            "out_of_distribution",
        ),
        # Novel in shape alone is no evidence: the novelty decides whether the image is far.
        ({"novelty_percentile": 90.0, "shape_distance_percentile": 100.0}, "model_error"),
        ({"ood_percentile": 99.0, "label_issue": True}, "label_error"),  # at the cut: not OOD
        ({"label_issue": True, "knn_share_true": 0.0, "knn_share_pred": 0.9}, "label_error"),
        ({"label_issue": True, "knn_share_true": 0.5, "knn_share_pred": 0.5}, "ambiguous"),  # a look-alike
        ({"label_issue": True, "knn_share_true": 0.1, "knn_share_pred": 0.9}, "model_error"),
        ({"label_issue": False, "knn_share_true": 0.2, "knn_share_pred": 0.6}, "ambiguous"),
        ({"knn_share_true": 0.1, "knn_share_pred": 0.9}, "model_error"),
        ({"knn_share_true": 0.1, "knn_share_pred": 0.9, "duplicate_label": "b"}, "ambiguous"),
        ({"knn_share_true": 0.1, "knn_share_pred": 0.9, "duplicate_label": "c"}, "model_error"),
        ({"shortcut_present": False, "ood_percentile": float("nan"), "label_issue": None}, "model_error"),
        # The combined novelty decides over the energy percentile alone where it was formed.
        ({"novelty_percentile": 99.5, "ood_percentile": 50.0}, "out_of_distribution"),
        ({"novelty_percentile": 90.0, "ood_percentile": 100.0}, "model_error"),
        ({}, "model_error"),
    ],
)
def test_each_rule_and_its_precedence(evidence: dict[str, object], cause: str) -> None:
    assert decide(row(**evidence), TH) == cause


def test_label_error_needs_the_given_label_below_the_cut() -> None:
    th = Thresholds(given_label_below=0.05)
    flagged = {"label_issue": True, "knn_share_true": 0.0}
    assert decide(row(**flagged, given_label_probability=0.01), th) == "label_error"
    assert decide(row(**flagged, given_label_probability=0.2), th) == "model_error"
    assert decide(row(**flagged, given_label_probability=None), th) == "label_error"  # not measured


def test_vocabulary_is_in_precedence_order() -> None:
    assert CAUSES == (
        "shortcut",
        "out_of_distribution",
        "image_quality",
        "label_error",
        "ambiguous",
        "model_error",
    )


def test_image_properties_by_hand() -> None:
    x = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    x[1, 0, 1, 1] = 255  # one white pixel on black
    p = image_properties(x, background=0.0)
    assert p["brightness"].tolist() == [0.0, pytest.approx(1 / 16)]
    assert p["contrast"][1] == pytest.approx(np.sqrt(1 / 16 - 1 / 256))
    # Laplacian of the 2x2 interior: 4 at the white pixel, -1 at its two interior neighbours.
    assert p["sharpness"][1] == pytest.approx((4 + 1 + 1) / 16)
    assert p["object_area"].tolist() == [0.0, 1 / 16]
    assert np.isnan(image_properties(x)["object_area"]).all()


def _test_set(n: int = 60, k: int = 3, seed: int = 0) -> TestSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    probs = np.full((n, k), 0.05)
    probs[np.arange(n), labels] = 0.9
    wrong = np.array([1, 4, 7])  # misclassified as (label + 1) % k
    probs[wrong] = 0.05
    probs[wrong, (labels[wrong] + 1) % k] = 0.9
    images = rng.integers(90, 160, (n, 1, 8, 8)).astype(np.uint8)
    images[7] = 0  # a black image
    return TestSet(
        probs=probs / probs.sum(1, keepdims=True),
        labels=labels,
        index=np.arange(n) + 100,
        class_names=("a", "b", "c"),
        images=images,
    )


def _records() -> dict[str, dict[str, object]]:
    return {
        "label_issues": {"data": {"test": {"issues": [{"index": 101, "score": 0.04, "suggested": 2}]}}},
        "representation": {
            "data": {
                "settings": {"near_duplicate_threshold": 0.95},
                "failures": [
                    {
                        "index": 104,
                        "true": 1,
                        "neighbour_labels": [2, 1, 2, 1, 1],
                        "neighbour_distances": [0.01, 0.2, 0.3, 0.3, 0.4],
                        "neighbour_train_index": [9, 8, 7, 6, 5],
                        "share_true": 0.6,
                        "share_pred": 0.4,
                    }
                ],
            }
        },
    }


def test_diagnose_joins_evidence_by_official_index() -> None:
    t = _test_set()
    t.probs[1] = [0.09, 0.01, 0.9]  # 101: the model gives its label (b) almost nothing
    d = diagnose(_records(), t)
    by_index = {r["index"]: r for r in d.rows}
    assert sorted(by_index) == [101, 104, 107]
    assert by_index[101]["cause"] == "label_error"
    assert by_index[101]["suggested_label"] == "c" and by_index[101]["label_quality"] == 0.04
    assert by_index[104]["cause"] == "ambiguous"
    assert by_index[104]["duplicate_label"] == "c" and by_index[104]["nearest_train_index"] == 9
    assert by_index[104]["knn_share_true"] == 0.6
    assert by_index[107]["cause"] == "image_quality" and "low brightness" in by_index[107]["quality_flags"]
    assert by_index[107]["knn_share_true"] is None  # representation did not record it: empty
    assert by_index[101]["ood_score"] is None and "ood_score" in d.missing
    assert d.thresholds["neighbour_share"] == pytest.approx(2 / 5)
    assert d.counts["label_error"] == 1 and sum(d.counts.values()) == 3
    # The label-error cut: the median probability correct images give their runner-up class.
    assert d.thresholds["given_label_below"] == pytest.approx(0.05)
    assert by_index[101]["given_label_probability"] == pytest.approx(0.01)
    t.probs[1] = [0.04, 0.06, 0.9]  # the label is no less likely than a typical runner-up
    assert {r["index"]: r["cause"] for r in diagnose(_records(), t).rows}[101] == "model_error"


def test_a_probe_that_did_not_run_leaves_its_columns_empty() -> None:
    t = _test_set()
    d = diagnose({}, t)
    assert all(r["label_issue"] is None and r["knn_share_pred"] is None for r in d.rows)
    assert "label_issues" in d.missing["label_issue"] and "representation" in d.missing["knn_share_true"]


def test_csv_columns_and_types(tmp_path: Path) -> None:
    d = diagnose(_records(), _test_set())
    path = tmp_path / "diagnosis.csv"
    write_csv(path, d.rows)
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert tuple(got[0]) == ALL_COLUMNS
    assert [int(r["index"]) for r in got] == [r["index"] for r in d.rows]
    for r in got:
        assert r["cause"] in CAUSES and 0.0 <= float(r["confidence"]) <= 1.0
        assert r["label_issue"] in ("true", "false") and r["ood_score"] == ""
        assert r["brightness"] != "" and 0.0 <= float(r["brightness"]) <= 1.0


def test_shortcut_evidence_from_a_planted_patch() -> None:
    t = _test_set()
    train = np.full((12, 1, 8, 8), 120, dtype=np.uint8)
    train_labels = np.arange(12) % 3
    train[train_labels == 2, :, 0:2, 0:2] = 255  # class c carries a white corner
    t.train_images, t.train_labels = train, train_labels
    t.images[4, :, 0:2, 0:2] = 255  # test image 4 (true b) is predicted c and carries c's patch
    t.images[0, :, 0:2, 0:2] = 255  # a correct image with the patch: not a failure
    rec = {
        "shortcut": {
            "data": {
                "settings": {"match_tolerance": 0.1},
                "shortcuts": [{"class": 2, "box": {"top": 0, "left": 0, "height": 2, "width": 2}}],
            }
        }
    }
    d = diagnose(rec, t)
    by_index = {r["index"]: r for r in d.rows}
    assert by_index[104]["shortcut_present"] is True and by_index[104]["cause"] == "shortcut"
    assert by_index[101]["shortcut_present"] is False  # predicted c, no patch
    assert 100 not in by_index


def test_quality_bounds_come_from_correct_images() -> None:
    t = _test_set()
    ev = collect({}, t, quality_tail=0.5)
    ok = t.correct
    b = image_properties(t.images)["brightness"]
    assert ev.thresholds["brightness_low"] == pytest.approx(np.percentile(b[ok], 0.5))


def test_embedding_slices_find_a_planted_weak_cluster() -> None:
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 0.1, (300, 2)), rng.normal(5, 0.1, (100, 2))])
    wrong = np.zeros(400, dtype=bool)
    wrong[300:340] = True  # 40% errors in the second group, 2 in the first: 10.5% overall
    wrong[:2] = True
    labels = np.r_[np.zeros(300, int), np.ones(100, int)]
    props = {"brightness": np.r_[np.full(300, 0.2), np.full(100, 0.8)]}
    found, settings = embedding_slices(emb, wrong, labels, ("x", "y"), props, n_clusters=2)
    assert len(found) == 1 and found[0]["errors"] == 40 and found[0]["n"] == 100
    assert found[0]["classes"] == [["y", 1.0]] and found[0]["brightness"] == pytest.approx(0.8)
    assert settings["overall_error_rate"] == pytest.approx(42 / 400)


def test_pair_slices_group_by_pair_and_cause() -> None:
    rows = [
        {"index": 1, "true": "a", "predicted": "b", "cause": "ambiguous"},
        {"index": 2, "true": "a", "predicted": "b", "cause": "ambiguous"},
        {"index": 3, "true": "a", "predicted": "b", "cause": "label_error"},
    ]
    got = pair_slices(rows)
    assert [(s["cause"], s["n"], s["indices"]) for s in got] == [
        ("ambiguous", 2, [1, 2]),
        ("label_error", 1, [3]),
    ]


def test_result_has_at_most_seven_findings_and_ten_summary_lines() -> None:
    t = _test_set()
    res = to_result(diagnose(_records(), t), t)
    assert 1 <= len(res.data["findings"]) <= 7 and len(res.summary) <= 10
    assert res.metrics["n_failures"] == 3
    assert res.summary[0].startswith("3 of 60 test images are misclassified")
    assert set(res.figures) == {f"finding_{i + 1}" for i in range(len(res.data["findings"]))}


def test_ood_and_data_audit_offers_fill_their_columns() -> None:
    t = _test_set()
    n = len(t.labels)
    knn = [0.1 * (i % 10) for i in range(n)]  # correct images' scores: 0.0 .. 0.9
    knn[4] = 5.0  # failure 104 far from everything
    records = {
        "ood": {"offer": {"index": t.index.tolist(), "scores": {"msp": [0.0] * n, "knn": knn}}},
        "data_audit": {
            "offer": {"issues": {"blurry": [104], "grayscale": [101, 104]}, "thresholds": {"blurry": 0.01}}
        },
    }
    d = diagnose(records, t)
    by_index = {r["index"]: r for r in d.rows}
    assert by_index[104]["ood_score"] == 5.0 and by_index[104]["ood_percentile"] == 100.0
    assert by_index[104]["cause"] == "out_of_distribution"  # data_audit's flag is evidence only
    assert by_index[107]["cause"] == "image_quality"  # the black image, by its own properties
    correct_scores = np.sort(np.array(knn)[t.correct])
    assert by_index[101]["ood_percentile"] == pytest.approx(
        100 * np.searchsorted(correct_scores, 0.1) / len(correct_scores)
    )
    assert by_index[104]["audit_flags"] == "blurry" and by_index[104]["quality_flags"] == ""
    assert by_index[101]["audit_flags"] == ""  # grayscale is not an image-quality issue
    assert d.sources == {"ood_score": "knn", "novelty_percentile": "Fisher's combination of ood_percentile"}
    assert "ood_score" not in d.missing


@pytest.mark.slow
def test_a_run_writes_its_diagnosis_and_the_report_opens_with_it(tmp_path: Path, fmnist_root: str) -> None:
    out = tmp_path / "run"
    probes = "probes=[evaluation, failures, representation, label_issues]"
    run_ok(["run", "--quiet", "--out", str(out), "--data-root", fmnist_root, "--set", probes, *FAST])
    with open(out / "diagnosis.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n_wrong = int(json.loads((out / "metrics.json").read_text())["failures.n_errors"])
    assert len(rows) == n_wrong and all(r["cause"] in CAUSES for r in rows)
    assert all(r["shortcut_present"] == "" and r["knn_share_true"] != "" for r in rows)
    rec = json.loads((out / "results" / "diagnosis.json").read_text())
    assert "the shortcut probe did not run" in rec["data"]["missing"]["shortcut_present"]
    html = (out / "report.html").read_text()
    assert html.index('id="diagnosis"') < html.index('id="probe-evaluation"')
    summary = html[
        html.index('<ul class="summary">') : html.index("</ul>", html.index('<ul class="summary">'))
    ]
    assert 1 <= summary.count("<li>") <= 10


def test_the_run_hands_the_diagnosis_each_probes_offer() -> None:
    from dataclasses import dataclass

    from stresslab.probes.base import Offer, ProbeResult
    from stresslab.runs.diagnosis_step import records

    @dataclass
    class Scores(Offer):
        index: list[int]

    results = {"ood": ProbeResult(offer=Scores([3])), "broken": ProbeResult(), "evaluation": ProbeResult()}
    got = records(results, failed=["broken"])
    assert got["ood"]["offer"] == {"index": [3]} and got["evaluation"]["offer"] is None
    assert "broken" not in got


def test_corruption_and_attack_changes_fill_their_columns() -> None:
    t = _test_set()
    records = {
        "corruption": {
            "data": {
                "test_index": [101, 104, 150],
                "flip_severity": [3, None, 1],
                "flip_corruption": ["contrast", None, "fog"],
            }
        },
        "adversarial": {
            "data": {
                "index": [104, 107],
                "flip_epsilon": {"l2": [0.5, 0.5], "linf": [0.02, None]},
                "flip_attack": {"l2": ["pgd_l2", "pgd_l2"], "linf": ["pgd_linf", None]},
            }
        },
    }
    by_index = {r["index"]: r for r in diagnose(records, t).rows}
    assert by_index[101]["corruption_flip_severity"] == 3 and by_index[101]["corruption_flip"] == "contrast"
    assert by_index[104]["corruption_flip_severity"] is None  # in the sample, no severity changed it
    assert by_index[107]["corruption_flip_severity"] is None  # not in the sample
    assert by_index[104]["attack_flip_epsilon"] == 0.02 and by_index[104]["attack_flip"] == "pgd_linf"
    assert by_index[107]["attack_flip_epsilon"] is None and by_index[101]["attack_flip"] is None
    assert "corruption_flip_severity" not in diagnose(records, t).missing
    old = diagnose({"corruption": {"data": {"test_index": [101]}}}, t)
    assert "no per-image changes" in old.missing["corruption_flip_severity"]
