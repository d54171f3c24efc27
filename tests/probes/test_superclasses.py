"""Superclasses (CIFAR-100's coarse labels): loading, the superclass metrics against hand
computations, and the evaluation probe's superclass view and many-class confusion matrix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from stresslab.data import load_split
from stresslab.data.base import Split
from stresslab.data.hierarchy import coarse_map
from stresslab.errors import DataError
from stresslab.metrics.confusion import cluster_order
from stresslab.metrics.superclass import superclass_scores
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions
from tests.conftest import TinyNet, make_split
from tests.data_factories import write_cifar10, write_cifar100


def test_cifar100_coarse_labels_follow_split_and_subsets(tmp_path: Path) -> None:
    w = write_cifar100(tmp_path, n_train=300, n_test=200)
    split = load_split("cifar100", root=str(tmp_path), val_fraction=0.2, train_subset=120, test_subset=50)
    info = split.info
    assert info.coarse_names == tuple(f"super_{i:02d}" for i in range(20))
    assert info.coarse_of == tuple(k // 5 for k in range(100))
    assert split.train_coarse is not None and split.val_coarse is not None and split.test_coarse is not None
    # Each image keeps its own superclass through the validation split and both subsets.
    assert torch.equal(split.train_coarse, torch.from_numpy(w.train_coarse)[split.train_index])
    assert torch.equal(split.val_coarse, torch.from_numpy(w.train_coarse)[split.val_index])
    assert torch.equal(split.test_coarse, torch.from_numpy(w.test_coarse)[split.test_index])
    assert torch.equal(split.train_coarse, split.train_y // 5)
    assert len(split.test_coarse) == 50 and len(split.val_coarse) == 60


def test_datasets_without_superclasses_have_none(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_batch=4, n_test=10)
    split = load_split("cifar10", root=str(tmp_path), val_fraction=0.0)
    assert split.test_coarse is None and not split.info.has_coarse


def test_coarse_map_unknown_and_contradiction() -> None:
    fine, coarse = torch.tensor([0, 1, 1, 3]), torch.tensor([2, 0, 0, 1])
    assert coarse_map(fine, coarse, 4, "toy") == (2, 0, -1, 1)
    with pytest.raises(DataError, match="class 1 has images in superclasses 0 and 1"):
        coarse_map(torch.tensor([1, 1]), torch.tensor([0, 1]), 2, "toy")


def test_superclass_scores_by_hand() -> None:
    # Classes 0, 1 in superclass 0; 2, 3 in superclass 1.
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    preds = torch.tensor([0, 1, 2, 2, 2, 0])
    s = superclass_scores(labels, preds, torch.tensor([0, 0, 0, 1, 1, 1]), (0, 0, 1, 1), 2)
    # Errors: 0->1 (within), 1->2 (across), 3->2 (within), 3->0 (across).
    assert (s.n_errors, s.n_within) == (4, 2)
    assert s.within_error_share == pytest.approx(0.5)
    # Right superclass: images 0, 1, 3, 4.
    assert s.accuracy == pytest.approx(4 / 6)
    # A random wrong class is a sibling with probability 1 of 3.
    assert s.chance_within_share == pytest.approx(1 / 3)
    assert s.confusion.tolist() == [[2, 1], [1, 2]]
    none_wrong = superclass_scores(labels, labels, torch.tensor([0, 0, 0, 1, 1, 1]), (0, 0, 1, 1), 2)
    assert none_wrong.within_error_share is None and none_wrong.accuracy == 1.0


def test_cluster_order_groups_classes_that_confuse_each_other() -> None:
    # Three groups of mutually confused classes, interleaved in the class order.
    groups = [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    cm = np.eye(9, dtype=np.int64) * 50
    for g in groups:
        for i in g:
            for j in g:
                if i != j:
                    cm[i, j] = 10
    order = cluster_order(cm)
    assert sorted(order) == list(range(9))
    spans = [sorted(order.index(i) for i in g) for g in groups]
    assert all(s[-1] - s[0] == 2 for s in spans)  # each group sits contiguously


def _ctx(split: Split, preds: torch.Tensor) -> ProbeContext:
    k = split.info.num_classes
    logits = torch.nn.functional.one_hot(preds, k).float() * 4.0
    p = Predictions(logits, split.test_y, torch.empty(len(preds), 0), split.test_index)
    return ProbeContext(
        model=TinyNet(split.info),
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=16,
        predictions=p,
        val_predictions=p,
    )


def test_evaluation_reports_superclasses() -> None:
    split = make_split(n_test=8, classes=4)
    split.info = dataclasses.replace(split.info, coarse_names=("animals", "vehicles"), coarse_of=(0, 0, 1, 1))
    split.test_coarse = split.test_y // 2
    # labels 0,1,2,3,0,1,2,3; two errors within a superclass, one across.
    preds = torch.tensor([1, 1, 3, 3, 0, 2, 2, 3])
    res = build_probe("evaluation", {}).run(_ctx(split, preds))
    assert res.metrics["within_superclass_error_share"] == pytest.approx(2 / 3)
    assert res.metrics["coarse_accuracy"] == pytest.approx(7 / 8)
    # Superclass 0 images: 0->0, 1->0, 0->0, 1->1 (the across error); superclass 1: all right.
    assert res.data["superclasses"]["confusion_matrix"] == [[3, 1], [0, 4]]
    assert "confusion_superclass" in res.figures
    assert any(t.title.startswith("Superclasses") for t in res.tables)
    assert any("Superclass accuracy 87.50%" in line for line in res.summary)


def test_many_classes_get_a_clustered_labelled_matrix() -> None:
    split = make_split(n_test=80, classes=40, size=16)
    preds = split.test_y.clone()
    preds[::3] = (preds[::3] + 1) % 40
    res = build_probe("evaluation", {}).run(_ctx(split, preds))
    assert "confusion" not in res.figures and "confusion_clustered" in res.figures
    fig = res.figures["confusion_clustered"]
    assert fig.get_size_inches()[0] >= 9.0
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert sorted(labels) == sorted(split.info.class_names)
    assert sorted(res.data["confusion_cluster_order"]) == list(range(40))
    assert "coarse_accuracy" not in res.metrics
