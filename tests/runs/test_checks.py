"""Release checks: every operator and wildcard, warnings, the baseline comparison against
hand counts and scipy, JUnit and Markdown output, the CLI's exit codes, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from stresslab.errors import ConfigError
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.metrics.paired import mcnemar_exact, negative_flip_rate, negative_flips
from stresslab.runs.checks import Condition, check_before_run, evaluate_checks, parse_checks, run_checks
from stresslab.runs.checks.baseline import aligned, comparison
from stresslab.runs.checks.writers import junit_xml
from stresslab.runs.config import resolve
from stresslab.runs.saved_predictions import SavedPredictions
from tests.cli_helpers import invoke
from tests.run_factories import NAMES, lookup_run, probabilities

# 12 test images, 3 classes. The baseline is right on rows 0-7, the new model on 0-3 and 8-11:
# 4 broken (rows 4-7, the new model wrong with confidence .95, .95, .6, .6), 4 fixed (8-11).
LABELS = np.arange(12) % 3
OLD_RIGHT = np.arange(12) < 8
NEW_RIGHT = (np.arange(12) < 4) | (np.arange(12) >= 8)
NEW_CONF = np.array([0.8] * 4 + [0.95, 0.95, 0.6, 0.6] + [0.7] * 4)


def _preds(right: np.ndarray) -> np.ndarray:
    return np.where(right, LABELS, (LABELS + 1) % 3)


OLD = probabilities(_preds(OLD_RIGHT), np.full(12, 0.7))
NEW = probabilities(_preds(NEW_RIGHT), NEW_CONF)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gates")
    return lookup_run(root / "new", NEW, LABELS), lookup_run(root / "old", OLD, LABELS)


def _saved(probs: np.ndarray, index: np.ndarray | None = None) -> SavedPredictions:
    idx = np.arange(len(probs)) if index is None else index
    return SavedPredictions(probs.astype(np.float32), LABELS[: len(probs)].astype(np.int64), idx, NAMES)


@pytest.mark.parametrize(
    ("text", "holds", "fails"),
    [
        (">= 0.5", 0.5, 0.49),
        ("<= 0.5", 0.5, 0.51),
        ("> 0.5", 0.51, 0.5),
        ("< 0.5", 0.49, 0.5),
        ("== 3", 3.0, 3.5),
        ("!= 3", 2.0, 3.0),
        (">=1e-3", 0.001, 0.0009),
    ],
)
def test_every_operator(text: str, holds: float, fails: float) -> None:
    cond = Condition.parse(text)
    assert cond.holds(holds) and not cond.holds(fails)
    assert not cond.holds(math.nan)


@pytest.mark.parametrize("bad", ["=> 0.5", "0.9", "at least 3", ">= x", 0.9])
def test_a_malformed_condition_names_the_key(bad: object) -> None:
    with pytest.raises(ValueError, match="evaluation.accuracy"):
        Condition.parse(bad, "evaluation.accuracy")
    with pytest.raises(ConfigError, match="evaluation.accuracy"):
        parse_checks({"evaluation.accuracy": bad})


def test_checks_in_the_config_round_trip_and_take_set_overrides() -> None:
    cfg = resolve(
        {"checks": {"evaluation.accuracy": ">= 0.9", "warnings": "none", "baseline": "old"}},
        overrides=["checks.calibration.ece=<= 0.05", "card.intended_use=demo"],
    )
    assert cfg.checks.conditions == {"evaluation.accuracy": ">= 0.9", "calibration.ece": "<= 0.05"}
    assert cfg.checks.baseline is not None and cfg.checks.baseline.run == "old"
    assert cfg.card.intended_use == "demo"
    assert resolve(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json")))) == cfg
    with pytest.raises(ConfigError, match="checks.baseline.max_class_drp"):
        resolve({"checks": {"baseline": {"run": "x", "max_class_drp": 1}}})


def test_metric_conditions_and_a_class_wildcard(runs: tuple[Path, Path]) -> None:
    new, _ = runs
    metrics = json.loads((new / "metrics.json").read_text())
    out = evaluate_checks(
        new,
        parse_checks(
            {
                "evaluation.accuracy": ">= 0.6",
                "failures.n_errors": "== 4",
                "evaluation.class.*.recall": ">= 0.7",
            }
        ),
    )
    by_name = {r["name"]: r for r in out["checks"]}
    assert by_name["evaluation.accuracy"]["value"] == metrics["evaluation.accuracy"] == pytest.approx(8 / 12)
    assert by_name["evaluation.accuracy"]["passed"] and by_name["failures.n_errors"]["passed"]
    # Per class (4 images each): ant rows 0,3,6,9 right in 0,3,9; bee 1,4,7,10 in 1,10;
    # cat 2,5,8,11 in 2,8,11.
    recalls = {n: by_name[f"evaluation.class.{n}.recall"] for n in NAMES}
    assert [recalls[n]["value"] for n in NAMES] == pytest.approx([0.75, 0.5, 0.75])
    assert [recalls[n]["passed"] for n in NAMES] == [True, False, True]
    assert not out["passed"] and out["n_failed"] == 1 and out["n_checks"] == 5
    assert "0.5" in recalls["bee"]["message"]


def test_an_unknown_key_names_the_closest_and_writes_nothing(runs: tuple[Path, Path]) -> None:
    new, _ = runs
    with pytest.raises(ConfigError, match=r"'evaluation.acuracy'.*closest: evaluation.accuracy"):
        run_checks(new, parse_checks({"evaluation.acuracy": ">= 0.5"}))
    with pytest.raises(ConfigError, match="evaluation.class.*.recal"):
        run_checks(new, parse_checks({"evaluation.class.*.recal": ">= 0.5"}))
    assert not (new / "checks.json").exists()
    with pytest.raises(ConfigError, match=r"no probe 'evaluaton'.*closest: evaluation"):
        check_before_run(parse_checks({"evaluaton.accuracy": ">= 0.5"}), ["evaluation", "failures"])
    check_before_run(parse_checks({"*.accuracy": ">= 0.5"}), ["evaluation"])  # a wildcard waits


def test_warning_conditions(runs: tuple[Path, Path]) -> None:
    new, _ = runs
    # 12 images for 15 calibration bins: the calibration probe warns, nothing else does.
    out = evaluate_checks(new, parse_checks({"warnings": "none"}))
    assert not out["passed"] and {w["kind"] for w in out["checks"][0]["warnings"]} == {"calibration"}
    assert evaluate_checks(new, parse_checks({"warnings": ["adversarial", "training"]}))["passed"]
    assert not evaluate_checks(new, parse_checks({"warnings": ["calibration"]}))["passed"]
    with pytest.raises(ConfigError, match="warnings"):
        parse_checks({"warnings": "few"})


def test_the_baseline_comparison_by_hand() -> None:
    new, old = _saved(NEW), _saved(OLD)
    c = comparison(new, old, aligned(new, old, Path("new"), Path("old")), confidence=0.9)
    assert (c["fixed"], c["broken"], c["confident_broken"]) == (4, 4, 2)
    assert c["negative_flip_rate"] == pytest.approx(4 / 12)
    assert c["mcnemar_p"] == pytest.approx(stats.binomtest(4, 8, 0.5).pvalue) == 1.0
    # Right per class, baseline -> new: ant 0,3,6 -> 0,3,9; bee 1,4,7 -> 1,10; cat 2,5 -> 2,8,11.
    assert c["class_drop_points"] == pytest.approx({"ant": 0.0, "bee": 25.0, "cat": -25.0})
    ece_new = expected_calibration_error(torch.tensor(NEW, dtype=torch.float32), torch.tensor(LABELS))
    assert c["ece"] == pytest.approx(ece_new, abs=1e-6)
    broken = c["broken_cases"]
    assert [b["index"] for b in broken] == [4, 5, 6, 7]  # most confident new error first
    assert broken[0] == {
        "index": 4,
        "true": "bee",
        "baseline_pred": "bee",
        "baseline_confidence": pytest.approx(0.7),
        "pred": "cat",
        "confidence": pytest.approx(0.95),
    }


def test_rows_are_matched_by_official_index_not_position() -> None:
    order = np.arange(12)[::-1]
    old_shuffled = SavedPredictions(OLD[order].astype(np.float32), LABELS[order], order, NAMES)
    new = _saved(NEW)
    c = comparison(new, old_shuffled, aligned(new, old_shuffled, Path("n"), Path("o")), 0.9)
    assert (c["fixed"], c["broken"]) == (4, 4)


def test_a_different_test_set_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"other images.*12 vs 11"):
        aligned(_saved(NEW[:11]), _saved(OLD), Path("new"), Path("old"))
    shifted = _saved(OLD, np.arange(12) + 100)
    with pytest.raises(ConfigError, match="12 only in the run"):
        aligned(_saved(NEW), shifted, Path("new"), Path("old"))


def test_mcnemar_and_flip_rate_against_scipy_and_counts() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7
    flips = negative_flips(a, b)
    assert flips.sum() == int((a & ~b).sum()) and negative_flip_rate(a, b) == pytest.approx(flips.mean())
    fixed, broken = int((~a & b).sum()), int(flips.sum())
    assert mcnemar_exact(fixed, broken) == pytest.approx(stats.binomtest(fixed, fixed + broken).pvalue)


def test_baseline_rules_pass_and_fail(runs: tuple[Path, Path]) -> None:
    new, old = runs
    rules = {"run": str(old), "max_negative_flip_rate": 0.4, "max_confident_broken": 2, "max_class_drop": 30}
    out = evaluate_checks(new, parse_checks({"baseline": {**rules, "max_ece_increase": 1.0}}))
    assert out["passed"], out["checks"]
    strict = evaluate_checks(new, parse_checks({"baseline": str(old)}))  # defaults: NFR .05, none confident
    failed = {r["name"] for r in strict["checks"] if not r["passed"]}
    assert failed >= {"baseline.negative_flip_rate", "baseline.confident_broken", "baseline.class_drop"}
    assert "baseline.accuracy" not in failed  # 4 fixed vs 4 broken: p = 1
    drop = next(r for r in strict["checks"] if r["name"] == "baseline.class_drop")
    assert drop["value"] == pytest.approx(25.0) and "drop 25.00 points (bee)" in drop["message"]


def test_junit_counts_and_failure_messages(runs: tuple[Path, Path]) -> None:
    new, old = runs
    out = evaluate_checks(new, parse_checks({"evaluation.accuracy": ">= 0.9", "baseline": str(old)}))
    root = ET.fromstring(junit_xml(out))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == out["n_checks"] == int(suite.get("tests", -1)) == 6
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == out["n_failed"] == int(suite.get("failures", -1))
    acc = next(c for c in cases if c.get("name") == "evaluation.accuracy").find("failure")
    assert acc is not None and "0.666667" in acc.get("message", "")


def test_cli_check_exit_codes_and_files(runs: tuple[Path, Path], tmp_path: Path) -> None:
    new, old = runs
    passing, failing, unknown = (tmp_path / f"{n}.yaml" for n in ("pass", "fail", "unknown"))
    passing.write_text('evaluation.accuracy: ">= 0.5"\n')
    failing.write_text('evaluation.accuracy: ">= 0.9"\nevaluation.class.*.recall: ">= 0.6"\n')
    unknown.write_text('evaluation.acuracy: ">= 0.9"\n')
    res = invoke(["check", str(new), "--checks", str(passing)])
    assert res.exit_code == 0, res.output
    res = invoke(["check", str(new), "--checks", str(failing), "--baseline", str(old)])
    assert res.exit_code == 1, res.output
    assert "evaluation.accuracy = 0.666667, required >= 0.9" in res.output
    saved = json.loads((new / "checks.json").read_text())
    assert not saved["passed"] and saved["baseline"]["broken"] == 4
    md = (new / "checks.md").read_text()
    assert md.startswith("## stresslab checks: FAILED") and "| 4 | bee | bee | 0.700 | cat | 0.950 |" in md
    ET.parse(new / "checks.xml")
    assert 'id="checks"' in (new / "report.html").read_text()  # the report opens with the table
    before = (new / "checks.json").read_bytes()
    res = invoke(["check", str(new), "--checks", str(unknown)])
    assert res.exit_code == 2 and "closest: evaluation.accuracy" in res.output
    assert (new / "checks.json").read_bytes() == before
    res = invoke(["check", str(new), "--checks", str(passing), "--baseline", str(tmp_path)])
    assert res.exit_code == 2 and "not a finished run directory" in res.output


def test_the_readme_checks_example_parses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("`gates.yaml` holds what a config's `checks:` section holds:\n\n```yaml\n")[1]
    checks = parse_checks(yaml.safe_load(block.split("```")[0]))
    assert "evaluation.class.*.recall" in checks.conditions and checks.warnings == "none"
    assert checks.baseline is not None and checks.baseline.max_confident_broken == 0
    assert checks.baseline == parse_checks({"baseline": "runs/released"}).baseline  # the defaults
