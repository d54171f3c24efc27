"""The study summary on made-up runs (no training): identical arms give intervals of zero
width, two seeds give none, a changed data split is compared unpaired, the pooled test and
the detectable differences are filled in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stresslab.runs.saved_predictions import SavedPredictions
from stresslab.study.aggregate import RunData
from stresslab.study.spec import parse_study
from stresslab.study.summary import summarize

N, K = 60, 3


def _preds(seed: int, flip: int = 0) -> SavedPredictions:
    rng = np.random.default_rng(seed)
    labels = np.arange(N) % K
    pred = np.where(rng.random(N) < 0.7, labels, (labels + 1) % K)
    pred[:flip] = labels[:flip]  # the arm fixes the first ``flip`` images
    probs = np.full((N, K), 0.1, np.float32)
    probs[np.arange(N), pred] = 0.8
    return SavedPredictions(probs, labels.astype(np.int64), np.arange(N, dtype=np.int64), ("a", "b", "c"))


def _runs(arms: dict[str, int], seeds: list[int]) -> dict[str, dict[int, RunData]]:
    return {
        arm: {s: RunData(arm, s, "done", Path("."), preds=_preds(s, flip)) for s in seeds}
        for arm, flip in arms.items()
    }


def _spec(seeds: list[int], other: dict[str, object] | None = None) -> object:
    raw = {
        "name": "made-up",
        "base": {"data": {"dataset": "fashion_mnist"}, "probes": {"evaluation": {}}},
        "seeds": seeds,
        "arms": {"base": {}, "other": other or {}},
    }
    return parse_study(raw)


def test_identical_arms_give_zero_width_everywhere() -> None:
    seeds = [0, 1, 2]
    s = summarize(_spec(seeds), _runs({"base": 0, "other": 0}, seeds), {})  # type: ignore[arg-type]
    acc = s["arms"]["other"]["vs_baseline"]["accuracy"]
    assert acc["method"] == "paired" and acc["lo"] == 0.0 and acc["hi"] == 0.0
    assert "within seed noise" in acc["words"] and acc["why"].startswith("paired by seed")
    assert acc["detectable"] == 0.0
    for row in s["per_class"]["other"]:
        assert row["lo"] == 0.0 and row["hi"] == 0.0 and row["p_holm"] == pytest.approx(1.0)
    pooled = s["cases"]["other"]["pooled"]
    assert (pooled["fixed"], pooled["broken"], pooled["p_value"]) == (0, 0, 1.0)
    # every interval of an arm's own metric lies inside [0, 1]
    for m in ("accuracy", "macro_f1", "ece"):
        rec = s["arms"]["base"]["metrics"][m]
        assert 0.0 <= rec["lo"] <= rec["hi"] <= 1.0


def test_a_consistent_fix_is_seen_pooled_and_paired() -> None:
    seeds = [0, 1, 2]
    s = summarize(_spec(seeds), _runs({"base": 0, "other": 30}, seeds), {})  # type: ignore[arg-type]
    c = s["cases"]["other"]
    assert c["pooled"]["broken"] == 0 and c["pooled"]["fixed"] == sum(p["fixed"] for p in c["pairs"])
    assert c["pooled"]["p_value"] < 0.001 and "stratified exact p" in c["words"]
    acc = s["arms"]["other"]["vs_baseline"]["accuracy"]
    assert acc["diff"] > 0 and acc["detectable"] is not None and "can detect differences of" in acc["words"]


def test_two_seeds_cannot_bound_and_a_changed_split_is_unpaired() -> None:
    seeds = [0, 1]
    s = summarize(_spec(seeds), _runs({"base": 0, "other": 5}, seeds), {})  # type: ignore[arg-type]
    acc = s["arms"]["other"]["vs_baseline"]["accuracy"]
    assert acc["lo"] is None and "2 seeds cannot bound a difference" in acc["words"]
    assert all(row["lo"] is None for row in s["per_class"]["other"])
    seeds = [0, 1, 2]
    spec = _spec(seeds, {"data.split_seed": 7})
    s = summarize(spec, _runs({"base": 0, "other": 5}, seeds), {})  # type: ignore[arg-type]
    acc = s["arms"]["other"]["vs_baseline"]["accuracy"]
    assert acc["method"] == "welch" and "data.split_seed" in acc["why"]


def test_plan_runs_nothing_and_like_gives_the_detectable_difference(fmnist_root: str, tmp_path: Path) -> None:
    import json

    import yaml
    from typer.testing import CliRunner

    from stresslab.cli import app
    from stresslab.metrics.power import detectable_difference
    from stresslab.study.estimate import detectable_like
    from stresslab.study.plan import StudyDir

    seeds = [0, 1, 2]
    finished = summarize(_spec(seeds), _runs({"base": 0, "other": 5}, seeds), {})  # type: ignore[arg-type]
    sd = finished["arms"]["other"]["vs_baseline"]["accuracy"]["sd"]
    got = {d["metric"]: d for d in detectable_like(finished, 5)}
    assert got["accuracy"]["detectable"] == pytest.approx(detectable_difference(sd, 5))
    like = StudyDir.create(tmp_path / "like", _spec(seeds))  # type: ignore[arg-type]
    like.summary.write_text(json.dumps(finished))

    raw = {
        "name": "planned",
        "base": {
            "data": {"dataset": "fashion_mnist", "root": fmnist_root, "train_subset": 200, "test_subset": 50},
            "model": {"name": "custom_cnn", "args": {"widths": [4, 8], "fc": 16}},
            "train": {"epochs": 2, "batch_size": 32},
            "probes": {"evaluation": {}},
        },
        "seeds": [0, 1],
        "arms": {"a": {}, "b": {"train.epochs": 3}},  # one setup: one timing probe
    }
    path = tmp_path / "planned.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["study", str(path), "--plan", "--like", str(like.path), "-q"])
    assert res.exit_code == 0, res.output
    assert "4 runs" in res.output and "b seed 1: train.epochs=3" in res.output
    assert "estimated training time" in res.output and "accuracy:" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["like", "planned.yaml"]  # nothing was written
    res = CliRunner().invoke(app, ["study", str(path), "--like", str(like.path)])
    assert res.exit_code != 0 and "--like needs --plan" in res.output
