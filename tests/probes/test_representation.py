"""The representation probe and its parts, against hand computations and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    adjusted_rand_score,
    confusion_matrix,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from stresslab.data.base import Split
from stresslab.metrics.duplicates import exact_duplicates, near_duplicates
from stresslab.metrics.neighbors import cosine_topk, knn_classify, knn_vote
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions
from stresslab.probes.representation.clusters import cluster_report, purity
from stresslab.train.loop import train
from tests.conftest import TinyNet, make_split


def test_cosine_topk_on_a_made_up_set_with_known_answers() -> None:
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    queries = torch.tensor([[2.0, 0.1], [0.0, -3.0], [1.0, 1.2]])
    sim, idx = cosine_topk(queries, keys, 2, chunk=2)  # chunk < Q: two chunks
    # By hand: q0 = (2, 0.1) -> key 0 (cos 2 / sqrt(4.01)), key 3 (cos 2.1 / sqrt(8.02));
    # q1 = (0, -3) -> keys 0 and 2 (both cos 0), before key 3 (-0.707) and key 1 (-1);
    # q2 = (1, 1.2) -> key 3 (cos 2.2 / sqrt(4.88)), key 1 (cos 1.2 / sqrt(2.44)).
    assert idx[0].tolist() == [0, 3]
    assert set(idx[1].tolist()) == {0, 2}
    assert idx[2].tolist() == [3, 1]
    assert sim[0].tolist() == pytest.approx([2 / 4.01**0.5, 2.1 / 8.02**0.5], abs=1e-6)
    assert sim[1].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert sim[2].tolist() == pytest.approx([2.2 / 4.88**0.5, 1.2 / 2.44**0.5], abs=1e-6)


def test_cosine_topk_matches_sklearn_brute_cosine() -> None:
    g = torch.Generator().manual_seed(0)
    keys, queries = torch.randn(500, 16, generator=g), torch.randn(70, 16, generator=g)
    sim, idx = cosine_topk(queries, keys, 7, chunk=32)
    nn_ = NearestNeighbors(n_neighbors=7, algorithm="brute", metric="cosine").fit(keys.numpy())
    dist, ref = nn_.kneighbors(queries.numpy())
    assert (idx.numpy() == ref).all()
    np.testing.assert_allclose(1.0 - sim.numpy(), dist, atol=1e-5)


def test_knn_vote_majority_and_ties_to_the_nearest() -> None:
    labels = torch.tensor(
        [
            [2, 1, 1, 0, 0],  # 1 and 0 tie with 2 votes; 1 appears first -> 1
            [0, 2, 2, 2, 0],  # 2 has the majority -> 2
            [3, 0, 1, 2, 4],  # all tie -> the nearest, 3
            [0, 1, 1, 0, 2],  # 0 and 1 tie; 0 is nearest -> 0
        ]
    )
    assert knn_vote(labels, 5).tolist() == [1, 2, 3, 0]
    assert knn_vote(labels[:, :1], 5).tolist() == [2, 0, 3, 0]  # k = 1: the nearest's label


def test_knn_classify_matches_sklearn_without_ties() -> None:
    g = torch.Generator().manual_seed(1)
    keys, queries = torch.randn(300, 8, generator=g), torch.randn(80, 8, generator=g)
    y = (keys[:, 0] > 0).long()  # two classes, odd k: no ties
    ours = knn_classify(queries, keys, y, 5, 2, chunk=16)
    ref = KNeighborsClassifier(5, algorithm="brute", metric="cosine").fit(keys.numpy(), y.numpy())
    assert (ours.numpy() == ref.predict(queries.numpy())).all()


def test_purity_by_hand_and_cluster_scores_match_sklearn() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    c = np.array([1, 1, 0, 0, 0, 2, 2, 1])
    # cluster 0: {0, 1, 1} -> 2; cluster 1: {0, 0, 2} -> 2; cluster 2: {2, 2} -> 2; (2 + 2 + 2) / 8
    assert purity(y, c) == pytest.approx(6 / 8)
    cm = confusion_matrix(y, c)
    assert purity(y, c) == pytest.approx(cm.max(axis=0).sum() / cm.sum())

    g = torch.Generator().manual_seed(2)
    centres = torch.randn(3, 6, generator=g) * 3
    labels = torch.arange(90) % 3
    emb = centres[labels] + torch.randn(90, 6, generator=g)
    rep = cluster_report(emb, labels, 3, seed=0)
    x = torch.nn.functional.normalize(emb, dim=1).double().numpy()
    ref = KMeans(3, n_init=4, random_state=0).fit(x).labels_
    assert rep.assignments == ref.tolist()
    a = np.asarray(rep.assignments)
    assert rep.nmi == pytest.approx(normalized_mutual_info_score(labels.numpy(), a))
    assert rep.ari == pytest.approx(adjusted_rand_score(labels.numpy(), a))
    assert rep.silhouette == pytest.approx(silhouette_score(x, a))
    assert rep.purity == pytest.approx(purity(labels.numpy(), a))
    assert np.asarray(rep.table).sum() == 90 and np.asarray(rep.table).shape == (3, 3)


def test_duplicates_found_when_planted() -> None:
    g = torch.Generator().manual_seed(3)
    train_x = torch.randint(0, 256, (40, 1, 6, 6), generator=g, dtype=torch.uint8)
    test_x = torch.randint(0, 256, (10, 1, 6, 6), generator=g, dtype=torch.uint8)
    test_x[2], test_x[7] = train_x[5], train_x[31]
    train_x[12] = train_x[5]  # a second training copy of the same image
    found = exact_duplicates(train_x, test_x)
    assert [(d.test, d.train, d.copies) for d in found] == [(2, 5, 2), (7, 31, 1)]

    sim = torch.tensor([0.5, 0.9995, 0.2, 1.0])
    nearest = torch.tensor([3, 8, 1, 4])
    near = near_duplicates(sim, nearest, 0.999, test_positions=torch.tensor([10, 11, 12, 13]))
    assert [(d.test, d.train) for d in near] == [(13, 4), (11, 8)]


def _ctx(split: Split, model: nn.Module) -> ProbeContext:
    model.eval()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=64)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=64)
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=64,
        predictions=preds,
        val_predictions=vpreds,
        sample_seed=42,
    )


class NoFeatures(nn.Module):
    """A classifier without ``features()``: global average of a conv map as logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def test_model_without_features_is_skipped_with_a_warning() -> None:
    split = make_split(n_test=30)
    ctx = _ctx(split, NoFeatures())
    assert ctx.predictions.embeddings.shape == (30, 0)
    res = build_probe("representation", {}).run(ctx)
    assert res.metrics == {}
    assert any("no features()" in w for w in res.warnings)


def test_probe_end_to_end_on_tiny_data() -> None:
    from stresslab.train.config import TrainConfig

    split = make_split(n_train=240, n_val=30, n_test=90, classes=3, seed=4)
    # Plant two exact copies of training images in the test set.
    split.test_x[5], split.test_x[40] = split.train_x[7], split.train_x[100]
    split.test_y[5], split.test_y[40] = split.train_y[7], split.train_y[100]
    torch.manual_seed(0)
    model = TinyNet(split.info)
    train(model, split, TrainConfig(epochs=2, batch_size=32, lr=0.02), device=torch.device("cpu"), seed=0)
    ctx = _ctx(split, model)
    settings = {"k": 1, "max_train": 120, "max_test": 60, "map_points": 40, "n_gallery": 3, "n_examples": 2}
    grads = [p.grad for p in model.parameters()]
    res = build_probe("representation", settings).run(ctx)

    m = res.metrics
    assert m["n_train_sample"] == 120 and m["n_test"] == 90 and m["kmeans_n"] == 60
    assert res.data["samples"] == {"train": 120, "test": 90, "kmeans": 60, "map": 40}
    assert m["n_exact_duplicates"] == 2
    assert any("inflate test accuracy" in w for w in res.warnings)

    # Independent kNN (k = 1, no ties) and linear probe on the same training sample.
    from stresslab.data.sampling import stratified_sample

    pos = stratified_sample(split.train_y, 120, seed=42)
    tr = Predictions.compute(model, split.train_x[pos], split.train_y[pos], pos, batch_size=64)
    te = ctx.predictions
    knn = KNeighborsClassifier(1, algorithm="brute", metric="cosine").fit(tr.embeddings.numpy(), tr.labels)
    assert m["knn_accuracy"] == pytest.approx(knn.score(te.embeddings.numpy(), te.labels.numpy()))
    lin = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        tr.embeddings.numpy(), tr.labels
    )
    assert m["linear_probe_accuracy"] == pytest.approx(lin.score(te.embeddings.numpy(), te.labels.numpy()))

    # One record per error, carrying its test index, with neighbour labels that add up.
    errors = torch.nonzero(~te.correct).flatten().tolist()
    recs = res.data["failures"]
    assert sorted(r["position"] for r in recs) == sorted(errors)
    for r in recs:
        assert r["index"] == int(split.test_index[r["position"]])
        assert len(r["neighbour_labels"]) == 1
        assert r["share_pred"] == float(r["neighbour_labels"][0] == r["pred"])
    if recs:
        assert m["errors_majority_pred_share"] == pytest.approx(
            np.mean([r["share_pred"] > 0.5 for r in recs])
        )
    else:
        assert "errors_majority_pred_share" not in m  # undefined, left out
    assert {"embedding_map", "kmeans_clusters", "exact_duplicates", "retrieval_examples"} <= set(res.figures)
    assert all(np.isfinite(v) for v in m.values())
    assert model.training is False  # the model leaves as it came in, gradients untouched
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))
