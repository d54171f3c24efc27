"""The ``ood`` probe: each score by hand, the detection metrics against scikit-learn, the sets,
the settings' errors, the probe end to end, and pytorch-ood as the oracle where installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from stresslab.errors import ConfigError
from stresslab.metrics.ood import aupr_in, aupr_out, auroc, fpr_at_tpr
from stresslab.probes import build_probe
from stresslab.probes.ood.scores import energy, fit_gaussian, knn_distance, mahalanobis, max_logit, msp
from stresslab.probes.ood.sets import builtin_set, fit_to_model, patch_shuffle
from stresslab.probes.predictions import Predictions
from stresslab.train.loop import train
from tests.conftest import TinyNet, make_split

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 3.0, -1.0]])


def test_logit_scores_by_hand() -> None:
    e2 = math.exp(2)
    assert msp(LOGITS).tolist() == pytest.approx(
        [-e2 / (e2 + 2), -1 / 3, -math.exp(3) / (math.exp(3) + 1 + math.exp(-1))]
    )
    assert max_logit(LOGITS).tolist() == [-2.0, -1.0, -3.0]
    assert energy(LOGITS).tolist() == pytest.approx(
        [-math.log(e2 + 2), -(1 + math.log(3)), -math.log(1 + math.exp(3) + math.exp(-1))]
    )


def test_mahalanobis_by_hand() -> None:
    # Two classes in 2-D: means (0, 0) and (4, 0); within-class deviations (+-1, 0) and (0, +-2).
    z = torch.tensor([[1.0, 0], [-1, 0], [0, 2], [0, -2], [5, 0], [3, 0], [4, 2], [4, -2]])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    g = fit_gaussian(z, y, ridge=0.0)
    # Tied covariance: diag(4 * 1 / 8, 4 * 4 / 8) = diag(0.5, 2).
    assert g.means.tolist() == [[0.0, 0.0], [4.0, 0.0]]
    assert g.precision.numpy() == pytest.approx(np.diag([2.0, 0.5]))
    q = torch.tensor([[1.0, 1.0], [3.0, 0.0], [2.0, 4.0]])
    # min over classes of 2 dx^2 + 0.5 dy^2
    assert mahalanobis(q, g).tolist() == pytest.approx([2.5, 2.0, 8.0 + 8.0])


def test_knn_distance_by_hand() -> None:
    train_f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    q = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # k = 2: second-nearest unit vector; for (1, 0) it is (0, 1) at distance sqrt(2);
    # for (1, 1)/sqrt 2 both (1, 0) and (0, 1) are at sqrt(2 - sqrt 2).
    assert knn_distance(q, train_f, 2).tolist() == pytest.approx(
        [math.sqrt(2), math.sqrt(2 - math.sqrt(2))], abs=1e-6
    )
    assert knn_distance(q, train_f, 1).tolist() == pytest.approx([0.0, math.sqrt(2 - math.sqrt(2))], abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    inside = np.round(rng.normal(0, 1, 57), 1)  # rounded: plenty of ties
    outside = np.round(rng.normal(1, 1, 41), 1)
    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    s = np.r_[inside, outside]
    assert auroc(inside, outside) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_out(inside, outside) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_in(inside, outside) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    fpr, tpr, _ = roc_curve(1 - y, -s)
    assert fpr_at_tpr(inside, outside, 0.95) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_sets_have_the_model_shape_and_patch_shuffle_keeps_pixels() -> None:
    x = torch.randint(0, 256, (6, 3, 10, 10), dtype=torch.uint8)
    for name in (
        "uniform_noise",
        "gaussian_noise",
        "photos",
        "inverted",
        "patch_shuffled",
        "corrupted:contrast",
    ):
        out = builtin_set(name, x, 6, torch.Generator().manual_seed(0))
        assert out.shape == (6, 3, 10, 10) and out.dtype == torch.uint8, name
    shuffled = patch_shuffle(x, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled[:, :, 8:], x[:, :, 8:])  # the edge beyond 4 x 2 stays
    assert torch.equal(shuffled.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    gray, note = fit_to_model(x, 1, (8, 8))
    assert gray.shape == (6, 1, 8, 8) and "3 x 10 x 10" in note


def test_unreadable_or_empty_set_is_a_config_error_naming_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"probes.ood: sets.mine.root"):
        build_probe("ood", {"sets": {"mine": {"dataset": "npz", "root": str(tmp_path / "none.npz")}}})
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match=r"sets.mine: cannot read npz"):
        build_probe("ood", {"sets": {"mine": {"dataset": "npz", "root": str(bad)}}})
    empty = tmp_path / "empty.npz"
    z = np.zeros((0, 8, 8), np.uint8)
    np.savez(empty, x_train=z, y_train=np.zeros(0, np.int64), x_test=z, y_test=np.zeros(0, np.int64))
    with pytest.raises(ConfigError, match=r"sets.mine"):
        build_probe("ood", {"sets": {"mine": {"dataset": "npz", "root": str(empty)}}})
    with pytest.raises(ConfigError, match="builtin"):
        build_probe("ood", {"builtin": ["stars"]})


def _ctx(split, model):  # type: ignore[no-untyped-def]
    from stresslab.probes.base import ProbeContext

    model.eval()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=64)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=64)
    return ProbeContext(model, split, torch.device("cpu"), 0, 64, preds, vpreds, sample_seed=42)


def test_probe_end_to_end_with_a_user_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from stresslab.train.config import TrainConfig

    split = make_split(n_train=150, n_val=30, n_test=60, classes=3, seed=4)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    train(model, split, TrainConfig(epochs=2, batch_size=32, lr=0.02), device=torch.device("cpu"), seed=0)
    split.test_y[:8] = (split.test_y[:8] + 1) % 3  # wrong labels: the model must err on some
    path = tmp_path / "rgb.npz"
    rgb = np.random.default_rng(0).integers(0, 256, (12, 12, 12, 3), dtype=np.uint8)
    np.savez(path, x_train=rgb, y_train=np.zeros(12, np.int64), x_test=rgb[:4], y_test=np.zeros(4, np.int64))
    probe = build_probe(
        "ood",
        {"n_images": 20, "max_train": 60, "k": 3, "sets": {"rgb": {"dataset": "npz", "root": str(path)}}},
    )
    res = probe.run(_ctx(split, model))
    m = res.metrics
    for s in ("msp", "max_logit", "energy", "mahalanobis", "knn"):
        assert 0.0 <= m[f"failure_auroc.{s}"] <= 1.0
        assert 0.0 <= m[f"uniform_noise.{s}.auroc"] <= 1.0
    assert res.data["samples"]["rgb"] == 16 and res.data["samples"]["train"] == 60
    assert any("rgb: 16 images converted from 3 x 12 x 12" in s for s in res.summary)
    offer = res.offer
    assert offer is not None and offer.index == split.test_index.tolist()  # type: ignore[attr-defined]
    assert len(offer.scores["knn"]) == 60  # type: ignore[attr-defined]
    assert {"risk_coverage", "score_histograms", "most_out_of_distribution"} <= set(res.figures)


def test_without_training_images_a_test_half_is_the_reference_and_the_other_half_is_scored() -> None:
    from sklearn.neighbors import NearestNeighbors

    from stresslab.data.base import Split

    full = make_split(n_train=0, n_val=0, n_test=50, classes=3, seed=5)
    split = Split(full.info, full.train_x, full.train_y, full.val_x, full.val_y, full.test_x, full.test_y)
    split.test_index = torch.arange(100, 150)  # official indices differ from positions
    torch.manual_seed(0)
    model = TinyNet(split.info)
    probe = build_probe("ood", {"n_images": 40, "k": 3, "builtin": ["uniform_noise"], "near": ["contrast"]})
    assert probe.needs_training_data() is None and probe.without_training_data() is not None
    ctx = _ctx(split, model)
    res = probe.run(ctx)
    ref = res.data["reference"]["index"]
    offer = res.offer
    assert offer is not None
    scored = offer.index  # type: ignore[attr-defined]
    # A class-stratified half; disjoint from the scored half; together every test image.
    assert len(ref) == 25 and not set(ref) & set(scored) and sorted(ref + scored) == list(range(100, 150))
    assert res.data["samples"]["reference"] == 25 and res.data["samples"]["test"] == 25
    # The outlier sets are made from scored images only (25 of them, not n_images = 40).
    assert res.data["samples"]["uniform_noise"] == 25 and ctx.samples["ood"] == 25
    # kNN against the reference embeddings, by a peer: sklearn's k-th neighbour distance.
    p = ctx.predictions
    ref_pos, sc_pos = torch.tensor(ref) - 100, torch.tensor(scored) - 100
    unit = torch.nn.functional.normalize(p.embeddings, dim=1).double().numpy()
    dist, _ = NearestNeighbors(n_neighbors=3).fit(unit[ref_pos]).kneighbors(unit[sc_pos])
    np.testing.assert_allclose(offer.scores["knn"], dist[:, 2], atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(offer.scores["msp"], msp(p.logits[sc_pos]).numpy(), atol=1e-6)  # type: ignore[attr-defined]
    assert any("fitted on 25 test images" in s and "no image is both" in s for s in res.summary)
    assert not any("Mahalanobis covariance" in w for w in res.warnings)  # 25 images, 16 dimensions
    # Three test images, one per class: no reference is left; the logit scores alone, with a warning.
    x, y = full.test_x[:3], full.test_y[:3]
    few = Split(full.info, full.train_x, full.train_y, full.val_x, full.val_y, x, y)
    res = probe.run(_ctx(few, model))
    assert "failure_auroc.knn" not in res.metrics and "uniform_noise.msp.auroc" in res.metrics
    assert any("too few to fit" in w for w in res.warnings)


def test_model_without_features_gets_logit_scores_and_a_warning() -> None:
    from tests.probes.test_representation import NoFeatures

    split = make_split(n_test=30)
    res = build_probe("ood", {"n_images": 10, "builtin": ["uniform_noise"], "near": []}).run(
        _ctx(split, NoFeatures())
    )
    assert "failure_auroc.msp" in res.metrics and "failure_auroc.knn" not in res.metrics
    assert any("no features()" in w for w in res.warnings)


def test_scores_match_pytorch_ood() -> None:
    pood = pytest.importorskip("pytorch_ood.detector")
    g = torch.Generator().manual_seed(0)
    train_f = torch.randn(300, 6, generator=g) + torch.arange(300)[:, None] % 3
    train_y = torch.arange(300) % 3
    f_in = torch.randn(200, 6, generator=g) + torch.arange(200)[:, None] % 3
    f_out = torch.randn(150, 6, generator=g) * 2.5
    head = torch.nn.Linear(6, 3)
    with torch.no_grad():
        l_in, l_out = head(f_in), head(f_out)
    ours = {
        "msp": (msp(l_in), msp(l_out)),
        "max_logit": (max_logit(l_in), max_logit(l_out)),
        "energy": (energy(l_in), energy(l_out)),
        "mahalanobis": (
            mahalanobis(f_in, fit_gaussian(train_f, train_y)),
            mahalanobis(f_out, fit_gaussian(train_f, train_y)),
        ),
        "knn": (knn_distance(f_in, train_f, 5), knn_distance(f_out, train_f, 5)),
    }
    maha = pood.Mahalanobis(None).fit_features(train_f, train_y)
    knn = pood.KNN(None, k=5).fit_features(train_f, train_y)
    theirs = {
        "msp": (pood.MaxSoftmax.score(l_in), pood.MaxSoftmax.score(l_out)),
        "max_logit": (pood.MaxLogit.score(l_in), pood.MaxLogit.score(l_out)),
        "energy": (pood.EnergyBased.score(l_in), pood.EnergyBased.score(l_out)),
        "mahalanobis": (maha.predict_features(f_in), maha.predict_features(f_out)),
        "knn": (knn.predict_features(f_in), knn.predict_features(f_out)),
    }
    for s in ours:
        a, b = auroc(*ours[s]), auroc(theirs[s][0].detach(), theirs[s][1].detach())
        assert abs(a - b) < 1e-3, (s, a, b)
