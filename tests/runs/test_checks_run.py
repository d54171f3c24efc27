"""``stresslab run`` with checks: evaluated at the end (exit 1 after every file is written),
against a baseline run, and refused before anything runs when a key or the test set is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli_helpers import invoke
from tests.data_factories import write_npz

pytestmark = pytest.mark.slow  # two tiny trainings: ~15 s on 2 busy cores


def _config(tmp: Path, checks: dict[str, Any], test_subset: int | None = None) -> Path:
    npz = tmp / "tiny.npz"
    if not npz.is_file():
        write_npz(npz, n_train=64, n_test=24, layout="nchw", channels=1)
    cfg = {
        "data": {"dataset": "npz", "root": str(npz), "test_subset": test_subset},
        "model": {"name": "custom_cnn", "args": {"widths": [4, 8], "fc": 16}},
        "train": {"epochs": 1, "batch_size": 32},
        "probes": ["evaluation"],
        "checks": checks,
    }
    path = tmp / f"config-{len(list(tmp.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("checked")
    res = invoke(
        ["run", str(_config(tmp, {"evaluation.accuracy": ">= 1.01"})), "--out", str(tmp / "a"), "-q"]
    )
    return tmp, res.output + f"\nexit {res.exit_code}"


def test_a_failing_check_exits_1_after_the_run_is_complete(first: tuple[Path, str]) -> None:
    tmp, output = first
    assert output.endswith("exit 1"), output
    run = tmp / "a"
    assert (run / "DONE").is_file() and (run / "report.html").is_file()
    outcome = json.loads((run / "checks.json").read_text())
    assert not outcome["passed"] and outcome["checks"][0]["name"] == "evaluation.accuracy"
    assert "check failed: evaluation.accuracy" in output
    html = (run / "report.html").read_text()
    assert html.index('id="checks"') < html.index('id="summary"')


def test_a_run_checked_against_a_baseline_run(first: tuple[Path, str]) -> None:
    tmp, _ = first
    loose = {
        "max_negative_flip_rate": 1.0,
        "max_confident_broken": None,
        "max_class_drop": None,
        "max_ece_increase": None,
        "alpha": None,
    }
    checks = tmp / "checks.yaml"
    checks.write_text(yaml.safe_dump({"evaluation.n_test": "== 24", "baseline": loose}))
    config = _config(tmp, {"evaluation.accuracy": ">= 0"})
    args = [
        "run",
        str(config),
        "--checks",
        str(checks),
        "--baseline",
        str(tmp / "a"),
        "--out",
        str(tmp / "b"),
    ]
    res = invoke([*args, "-q"])
    assert res.exit_code == 0, res.output
    outcome = json.loads((tmp / "b" / "checks.json").read_text())
    assert [r["name"] for r in outcome["checks"]] == [
        "evaluation.accuracy",
        "evaluation.n_test",
        "baseline.negative_flip_rate",
    ]
    assert outcome["passed"] and outcome["baseline"]["n_images"] == 24
    assert outcome["baseline"]["baseline"] == str(tmp / "a")


def test_mistakes_are_refused_before_anything_runs(first: tuple[Path, str]) -> None:
    tmp, _ = first
    res = invoke(["run", str(_config(tmp, {"evaluaton.accuracy": ">= 0.5"})), "--out", str(tmp / "c")])
    assert res.exit_code == 2 and "no probe 'evaluaton'" in res.output
    other_images = _config(tmp, {"baseline": str(tmp / "a")}, test_subset=12)
    res = invoke(["run", str(other_images), "--out", str(tmp / "d")])
    assert res.exit_code == 2 and "other or different" in res.output
    assert not (tmp / "c").exists() and not (tmp / "d").exists()
