"""The run's own witnesses: percentiles, pixel-space distance, the combined novelty, the
given-label cut and image-quality ranges per class, each by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from stresslab.diagnosis import TestSet, diagnose
from stresslab.diagnosis.novelty import combined, percentile_among, pixel_distance, runner_up_typical


def test_percentile_among_by_hand() -> None:
    ref = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    got = percentile_among(np.array([0.5, 2.0, 4.5, np.nan]), ref)
    assert got[:3].tolist() == [0.0, 25.0, 100.0] and np.isnan(got[3])
    assert np.isnan(percentile_among(np.array([1.0]), np.array([]))).all()


def test_pixel_distance_is_the_kth_nearest_training_image() -> None:
    train = np.zeros((12, 1, 4, 4), dtype=np.uint8)
    train[:, 0, 0, 0] = np.arange(12) * 10  # one pixel differs, by 10/255 steps
    test = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    test[1] = 255
    d = pixel_distance(test, train, np.array([0, 1]), seed=0)
    # Image 0 (all black): the 10th nearest training image has its pixel at 90.
    assert d[0] == pytest.approx(90 / 255, abs=1e-6)
    # Image 1 (all white): 15 pixels at 1 and one at 1 - 20/255 for the 10th nearest (value 20).
    assert d[1] == pytest.approx(np.sqrt(15 + (1 - 20 / 255) ** 2), abs=1e-5)
    assert np.isnan(d[2])  # not measured


def test_shape_distance_discounts_damage_but_not_layout() -> None:
    train = np.zeros((12, 1, 28, 28), dtype=np.uint8)
    for j in range(12):  # a bright 8x8 square, one place each
        top, left = 4 * (j // 4), 4 * (j % 4) + 2
        train[j, :, top : top + 8, left : left + 8] = 200
    base = train[5:6].astype(np.float64)
    dark = np.rint(base * 0.2)
    flat = np.rint(128 + (base - 128) * 0.2)
    noisy = np.clip(base + np.random.default_rng(0).normal(0, 40, base.shape), 0, 255)
    bar = np.zeros_like(base)
    bar[..., 12:16, :] = 200  # a layout no training image has
    test = np.concatenate([base, dark, flat, np.rint(noisy), bar]).astype(np.uint8)
    d = pixel_distance(test, train, np.arange(5), seed=0, shape=True)
    # Darkened and flattened copies keep the layout: the same shape distance as the original
    # (up to rounding to uint8); noise changes it little.
    assert d[1:3] == pytest.approx([d[0]] * 2, rel=0.02) and d[3] == pytest.approx(d[0], rel=0.15)
    # The bar is no square anywhere: farther in shape than any damaged square.
    assert d[4] > 1.1 * d[:4].max()


def test_combined_novelty_and_runner_up_by_hand() -> None:
    a = np.array([10.0, 90.0, 50.0, 99.0, 100.0, 100.0])
    b = np.array([30.0, 10.0, 50.0, np.nan, 60.0, 99.0])
    correct = np.array([True, True, False, False, False, False])
    stat, pct = combined([a, b], correct)
    # Tails 90 and 70, 10 and 90, 50 and 50; beyond every reference image: the 0.1% floor.
    expected = [
        -(np.log(90.0) + np.log(70.0)) / 2,
        -(np.log(10.0) + np.log(90.0)) / 2,
        -np.log(50.0),
        np.nan,
        -(np.log(0.1) + np.log(40.0)) / 2,
        -(np.log(0.1) + np.log(1.0)) / 2,
    ]
    assert stat == pytest.approx(expected, nan_ok=True)
    # Correct images' statistics: -4.37 and -3.40. The mean of percentiles ranks (90, 10)
    # with (50, 50); Fisher's method puts the one deeper tail above the two middles.
    assert pct.tolist()[:3] == [0.0, 50.0, 50.0] and np.isnan(pct[3]) and stat[1] > stat[2]
    assert pct[4:].tolist() == [100.0, 100.0] and stat[5] > stat[4]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    # Runner-ups 0.2, 0.3, 0.4: the median 0.3, the 75th percentile 0.35 (linear).
    correct = np.array([True, True, True, False])
    assert runner_up_typical(probs, correct, 50.0) == pytest.approx(0.3)
    assert runner_up_typical(probs, correct) == pytest.approx(0.35)


def _bags_and_shirts(n: int = 80) -> TestSet:
    """Class 0 images are bright, class 1 dark; two failures: a bright class-0 image
    predicted as 0's look-alike 2 (normal for its class) and a class-1 image darker than any."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    level = np.where(labels == 0, 200, 100) + rng.integers(-10, 10, n)
    images = np.clip(level[:, None, None, None] + rng.integers(-5, 5, (n, 1, 8, 8)), 0, 255).astype(np.uint8)
    images[1] = 10  # class 1, far darker than every image
    zeros = np.flatnonzero(labels == 0)[1:]
    f = images[zeros].reshape(len(zeros), -1).astype(float)
    z = [(v - np.median(v)) / v.std() for v in (f.mean(axis=1), f.std(axis=1))]
    images[0] = images[zeros[np.argmin(np.abs(z[0]) + np.abs(z[1]))]]  # a typical class-0 image
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), labels] = 0.9
    for p, pred in ((0, 2), (1, 2)):
        probs[p] = 0.05
        probs[p, pred] = 0.9
    return TestSet(probs=probs, labels=labels, index=np.arange(n), class_names=("a", "b", "c"), images=images)


def test_quality_flags_need_both_classes_out_of_range() -> None:
    t = _bags_and_shirts()
    by_index = {r["index"]: r for r in diagnose({}, t).rows}
    assert "low brightness" in by_index[1]["quality_flags"] and by_index[1]["cause"] == "image_quality"
    # Image 0 is brighter than the images of the class it was taken for, but typical of its
    # own class: no flag (a global or predicted-class range alone would not tell).
    assert by_index[0]["quality_flags"] == ""
