"""label_issues: confident learning against cleanlab itself, holdout and cross-validation modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cleanlab.filter import find_label_issues
from torch import nn

from stresslab.data.base import DatasetInfo, Split
from stresslab.models.base import Classifier
from stresslab.probes.base import PROBES, ProbeContext, ProbeResult
from stresslab.probes.failures import FailureCases
from stresslab.probes.label_issues import (
    LabelIssuesProbe,
    class_thresholds,
    find_issues,
    out_of_fold_probs,
)
from stresslab.probes.predictions import Predictions
from stresslab.train.config import TrainConfig
from tests.conftest import TinyNet, make_split

torch.set_num_threads(1)


def _made_up(
    n: int = 300, k: int = 4, n_wrong: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True classes, probabilities peaked on them (with a few genuinely ambiguous rows), and
    given labels of which ``n_wrong`` (returned as positions) are flipped to another class."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % k
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += rng.uniform(1.0, 5.0, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    wrong = rng.choice(n, n_wrong, replace=False)
    given = true.copy()
    given[wrong] = (true[wrong] + rng.integers(1, k, n_wrong)) % k
    return given, probs, np.sort(wrong)


@pytest.mark.parametrize("rank_by", ["self_confidence", "normalized_margin"])
@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "both"])
def test_issues_are_cleanlabs_own(rank_by: str, filter_by: str) -> None:
    given, probs, wrong = _made_up()
    ours = find_issues(given, probs, rank_by=rank_by, filter_by=filter_by)
    theirs = find_label_issues(given, probs, filter_by=filter_by, return_indices_ranked_by=rank_by, n_jobs=1)
    np.testing.assert_array_equal(ours.ranked, theirs)
    # the planted flips are found, and the suggestion is their true class for most of them
    found = set(ours.ranked.tolist())
    assert len(found & set(wrong.tolist())) >= 0.8 * len(wrong)
    assert len(found) <= 2 * len(wrong)
    # ranking: scores ascending along the list
    assert np.all(np.diff(ours.scores[ours.ranked]) >= 0)


def test_thresholds_are_per_class_mean_self_confidence() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.4, 0.6, 0.0], [0.1, 0.7, 0.2]])
    t = class_thresholds(labels, probs)
    np.testing.assert_allclose(t[:2], [0.7, 0.7])
    assert t[2] == 2.0  # absent class: never counted
    # thresholds equal to the set's own give exactly the default result
    given, p, _ = _made_up(seed=1)
    a = find_issues(given, p, thresholds=class_thresholds(given, p))
    b = find_issues(given, p)
    np.testing.assert_array_equal(a.ranked, b.ranked)
    np.testing.assert_array_equal(a.confident_joint, b.confident_joint)


def test_noise_rates_rows_are_shares_of_the_given_label() -> None:
    given, probs, _ = _made_up(n=400, n_wrong=40, seed=2)
    issues = find_issues(given, probs)
    cj = issues.confident_joint
    np.testing.assert_array_equal(cj.sum(axis=1), np.bincount(given, minlength=4))  # calibrated
    np.testing.assert_allclose(issues.noise_rates.sum(axis=1), 1.0)
    assert issues.estimated_noise_rate == pytest.approx(1 - np.trace(cj) / cj.sum())
    assert 0.03 < issues.estimated_noise_rate < 0.2  # 10% planted


def _info(k: int = 4) -> DatasetInfo:
    return DatasetInfo("made-up", tuple(f"c{i}" for i in range(k)), 1, 4, 4, (0.5,), (0.5,))


def _ctx(**kw: object) -> tuple[ProbeContext, np.ndarray]:
    """A context whose test predictions are the made-up probabilities (official indices 1000+)."""
    given, probs, wrong = _made_up()
    vgiven, vprobs, _ = _made_up(n=200, n_wrong=0, seed=5)
    n = len(given)
    test = Predictions(
        torch.from_numpy(np.log(probs)).float(),
        torch.from_numpy(given),
        torch.empty(n, 0),
        torch.arange(1000, 1000 + n),
    )
    val = Predictions(
        torch.from_numpy(np.log(vprobs)).float(),
        torch.from_numpy(vgiven),
        torch.empty(200, 0),
        torch.arange(200),
    )
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    split = Split(
        _info(), x[:8], torch.from_numpy(given[:8]), x[:0], torch.zeros(0, dtype=torch.long), x, test.labels
    )
    ctx = ProbeContext(
        model=nn.Linear(1, 1),
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=64,
        predictions=test,
        val_predictions=val,
        **kw,  # type: ignore[arg-type]
    )
    return ctx, wrong


def test_holdout_probe_splits_errors_into_label_and_model_errors() -> None:
    ctx, _ = _ctx()
    p = ctx.predictions
    errors = torch.nonzero(~p.correct).flatten().tolist()
    ctx.results["failures"] = ProbeResult(offer=FailureCases(errors, [], [], 0.9))
    res = LabelIssuesProbe(gallery_size=4).run(ctx)
    m = res.metrics
    expected = find_issues(
        p.labels.numpy(),
        p.probs.double().numpy(),
        thresholds=class_thresholds(
            ctx.val_predictions.labels.numpy(), ctx.val_predictions.probs.double().numpy()
        ),
    )
    records = res.data["test"]["issues"]
    assert [r["position"] for r in records] == expected.ranked.tolist()
    assert [r["index"] for r in records] == [1000 + i for i in expected.ranked.tolist()]
    label_like = set(errors) & set(expected.ranked.tolist())
    assert m["n_errors_likely_label_issue"] == len(label_like)
    assert m["n_errors_model"] + m["n_errors_likely_label_issue"] == len(errors)
    assert res.data["test"]["errors_likely_label_issue"] == [1000 + i for i in sorted(label_like)]
    assert m["n_test_issues"] == len(records) and res.data["settings"]["test_thresholds_from"] == "validation"
    assert res.data["settings"]["errors_from"] == "failures"
    assert "train" not in res.data and not res.warnings
    assert any("Training labels were not checked" in s for s in res.summary)
    assert {"test_candidates", "test_noise"} <= set(res.figures)
    assert PROBES.get("label_issues") is LabelIssuesProbe


def test_training_issues_in_holdout_mode_are_refused_with_a_warning() -> None:
    ctx, _ = _ctx()
    res = LabelIssuesProbe(sets=["test", "train"]).run(ctx)
    assert "train" not in res.data and "n_train_issues" not in res.metrics
    assert any("overconfident on its own training images" in w for w in res.warnings)


class _Mlp(Classifier):
    """No convolution at all: flatten -> linear."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Flatten()
        self.head = nn.Linear(info.channels * info.height * info.width, info.num_classes)


def test_cross_val_without_a_model_builder_falls_back_to_holdout_on_a_conv_free_model() -> None:
    ctx, _ = _ctx()
    ctx.model = _Mlp(_info())
    res = LabelIssuesProbe(mode="cross_val").run(ctx)
    assert res.data["settings"]["mode"] == "holdout"
    assert any("fell back to mode holdout" in w for w in res.warnings)
    assert res.metrics["n_test_issues"] > 0


def _tiny_cross_val_split() -> Split:
    s = make_split(n_train=60, n_val=12, n_test=12)
    return Split(
        s.info, s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y, train_index=torch.arange(500, 560)
    )


def test_cross_val_gives_out_of_fold_probabilities_for_every_training_image() -> None:
    split = _tiny_cross_val_split()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.02)

    def run() -> torch.Tensor:
        oof = out_of_fold_probs(
            split, cfg, lambda: TinyNet(split.info), k=3, seed=4, device=torch.device("cpu")
        )
        assert oof.probs.shape == (60, 3) and oof.seconds > 0 and oof.epochs == 2
        assert torch.isfinite(oof.probs).all()
        torch.testing.assert_close(oof.probs.sum(1), torch.ones(60))
        assert sorted(set(oof.fold.tolist())) == [0, 1, 2]
        for f in range(3):  # stratified: every fold holds every class
            assert set(split.train_y[oof.fold == f].tolist()) == {0, 1, 2}
        return oof.probs

    first = run()
    torch.testing.assert_close(run(), first)  # seeded folds, initializations and training


def test_cross_val_probe_searches_the_training_set() -> None:
    split = _tiny_cross_val_split()
    y = split.train_y.clone()
    y[:6] = (y[:6] + 1) % 3  # plant wrong training labels
    split = Split(
        split.info,
        split.train_x,
        y,
        split.val_x,
        split.val_y,
        split.test_x,
        split.test_y,
        train_index=split.train_index,
    )
    model = TinyNet(split.info)
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index)
    ctx = ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=64,
        predictions=preds,
        val_predictions=vpreds,
        train_config=TrainConfig(epochs=6, batch_size=16, lr=0.03),
        model_factory=lambda: TinyNet(split.info),
    )
    res = LabelIssuesProbe(mode="cross_val", folds=3, gallery_size=4).run(ctx)
    assert res.data["settings"]["mode"] == "cross_val" and res.data["settings"]["fold_epochs"] == 6
    assert len(res.data["train"]["fold"]) == 60
    assert res.metrics["cross_val_seconds"] > 0
    found = {r["position"] for r in res.data["train"]["issues"]}
    assert {r["index"] for r in res.data["train"]["issues"]} == {500 + i for i in found}
    assert len(found & set(range(6))) >= 4, found
    assert any("out-of-fold" in s for s in res.summary)
