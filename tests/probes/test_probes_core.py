"""evaluation and failures against independent computations (scikit-learn, numpy)."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from stresslab.errors import ConfigError
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.evaluation import overfitting_onset
from stresslab.probes.predictions import Predictions
from tests.conftest import TinyNet, make_split


def _ctx(history=None):  # type: ignore[no-untyped-def]
    split = make_split(n_test=90, classes=3)
    torch.manual_seed(1)
    model = TinyNet(split.info)
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=32)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=32)
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=32,
        predictions=preds,
        val_predictions=vpreds,
        history=history or [],
    )


def test_evaluation_matches_sklearn() -> None:
    ctx = _ctx()
    res = build_probe("evaluation", {}).run(ctx)
    y, p = ctx.predictions.labels.numpy(), ctx.predictions.preds.numpy()
    assert res.metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
    present = np.unique(y)
    assert res.metrics["macro_f1"] == pytest.approx(
        f1_score(y, p, average="macro", labels=present, zero_division=0)
    )
    assert res.metrics["macro_precision"] == pytest.approx(
        precision_score(y, p, average="macro", labels=present, zero_division=0)
    )
    assert res.metrics["macro_recall"] == pytest.approx(recall_score(y, p, average="macro", labels=present))
    assert res.data["confusion_matrix"] == confusion_matrix(y, p, labels=[0, 1, 2]).tolist()
    assert res.metrics["test_loss"] == pytest.approx(
        float(F.cross_entropy(ctx.predictions.logits, ctx.predictions.labels)), rel=1e-6
    )


def test_failures_lists_every_error_with_its_numbers() -> None:
    ctx = _ctx()
    res = build_probe("failures", {"threshold": 0.4}).run(ctx)
    p = ctx.predictions
    wrong = (p.preds != p.labels).nonzero().flatten().tolist()
    assert sorted(r["position"] for r in res.data["errors"]) == wrong
    assert res.metrics["n_errors"] == len(wrong)
    probs = torch.softmax(p.logits, 1).numpy()
    for r in res.data["errors"]:
        row = probs[r["position"]]
        assert r["confidence"] == pytest.approx(row.max(), abs=1e-6)
        assert r["entropy"] == pytest.approx(-(row * np.log(row)).sum(), abs=1e-5)
        assert r["margin"] == pytest.approx(np.sort(row)[-1] - np.sort(row)[-2], abs=1e-6)
        assert r["index"] == int(ctx.split.test_index[r["position"]])
    high = res.data["high_confidence_errors"]
    assert all(r["confidence"] >= 0.4 for r in high)
    assert len(high) == sum(r["confidence"] >= 0.4 for r in res.data["errors"])
    ent = [r["entropy"] for r in res.data["most_uncertain"]]
    assert ent == sorted(ent, reverse=True) and ent[0] == pytest.approx(float(p.entropy.max()), abs=1e-6)


def test_probe_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown setting.*thresh.*accepted: threshold"):
        build_probe("failures", {"thresh": 0.5})
    with pytest.raises(ConfigError, match="threshold must be in"):
        build_probe("failures", {"threshold": 2.0})
    with pytest.raises(ConfigError, match="unknown probe 'nope'"):
        build_probe("nope", {})


def test_overfitting_onset() -> None:
    h = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 0.6, 0.5, 0.55, 0.7], start=1)]
    assert overfitting_onset(h) == 3
    assert overfitting_onset(h[:3]) is None
    flat = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.505}]
    assert overfitting_onset(flat) is None


def test_curves_and_verdict_in_evaluation() -> None:
    h = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 0.5 + 0.1 * e,
            "val_loss": v,
            "val_acc": 0.6,
            "lr": 1e-3,
            "seconds": 1.0,
            "images_per_s": 100.0,
        }
        for e, v in enumerate([1.0, 0.6, 0.5, 0.55, 0.7], start=1)
    ]
    res = build_probe("evaluation", {}).run(_ctx(h))
    assert res.metrics["overfitting"] == 1 and res.metrics["best_val_loss_epoch"] == 3
    assert res.metrics["final_gap"] == pytest.approx(0.5 + 0.5 - 0.6)
    assert {"loss_curves", "accuracy_curves", "gap", "confusion"} <= set(res.figures)


def _ctx_with(labels: list[int], preds: list[int], classes: int = 3) -> ProbeContext:
    """A context whose predictions are given by hand (logits one-hot on ``preds``)."""
    ctx = _ctx()
    y = torch.tensor(labels)
    logits = F.one_hot(torch.tensor(preds), classes).float() * 5.0
    preds_obj = Predictions(
        logits=logits, labels=y, embeddings=torch.empty(len(y), 0), index=torch.arange(len(y))
    )
    ctx.predictions = preds_obj
    return ctx


def _binomial_tail(k: int, n: int, p: Fraction) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly."""
    return float(sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def test_chance_level_accuracy_is_flagged_with_a_binomial_test() -> None:
    labels = [i % 3 for i in range(90)]
    res = build_probe("evaluation", {}).run(_ctx_with(labels, [0] * 90))  # one class for everything
    assert res.metrics["majority_rate"] == pytest.approx(1 / 3)
    assert res.metrics["above_chance_p"] == pytest.approx(_binomial_tail(30, 90, Fraction(1, 3)), rel=1e-9)
    chance = [w for w in res.warnings if "not significantly above" in w]
    assert len(chance) == 1 and "class0" in chance[0] and "100" in chance[0]


def test_accuracy_at_the_majority_rate_of_an_imbalanced_set_is_flagged() -> None:
    labels = [0] * 60 + [1] * 15 + [2] * 15  # 67% accuracy from always answering class0
    res = build_probe("evaluation", {}).run(_ctx_with(labels, [0] * 90))
    assert res.metrics["accuracy"] == pytest.approx(2 / 3)
    assert res.metrics["majority_rate"] == pytest.approx(2 / 3)
    assert any("not significantly above" in w for w in res.warnings)


def test_accuracy_well_above_chance_is_not_flagged() -> None:
    labels = [i % 3 for i in range(90)]
    preds = [y if i % 10 < 6 else (y + 1) % 3 for i, y in enumerate(labels)]  # 54 of 90 right
    res = build_probe("evaluation", {}).run(_ctx_with(labels, preds))
    assert res.metrics["accuracy"] == pytest.approx(0.6)
    p = _binomial_tail(54, 90, Fraction(1, 3))
    assert p < 1e-6 and res.metrics["above_chance_p"] == pytest.approx(p, rel=1e-6)
    assert not any("not significantly above" in w for w in res.warnings)
