"""The ``data_audit`` probe: each flag on constructed images, the properties by hand and against
PIL, leakage on planted copies with other labels, the probe end to end, CleanVision as anchor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stresslab.probes import build_probe
from stresslab.probes.data_audit.duplicates import exact_across, exact_within, near_within
from stresslab.probes.data_audit.flags import fences, flag
from stresslab.probes.data_audit.present import error_test
from stresslab.probes.data_audit.properties import (
    entropy_bits,
    image_properties,
    laplacian_variance,
    pixel_signature,
)
from tests.conftest import TinyNet, make_split


def _noise(n: int, seed: int, c: int = 1, side: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(30, 221, (n, c, side, side), generator=g, dtype=torch.uint8)


def _blur(x: torch.Tensor) -> torch.Tensor:
    f = x.float()
    for _ in range(3):
        f = F.avg_pool2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return f.round().to(torch.uint8)


def test_each_flag_on_constructed_images() -> None:
    train = _noise(60, 0)
    ref = _noise(3, 1)
    test = torch.cat(
        [
            torch.zeros(1, 1, 16, 16, dtype=torch.uint8),  # 0: black -> dark
            torch.full((1, 1, 16, 16), 255, dtype=torch.uint8),  # 1: white -> light
            torch.full(
                (1, 1, 16, 16), 128, dtype=torch.uint8
            ),  # 2: constant -> low information, low contrast
            _blur(ref[:1]),  # 3: a blurred copy -> blurry
            ref,  # 4..6: ordinary
        ]
    )
    flags = flag(image_properties(test), fences(image_properties(train)))
    got = {k: torch.nonzero(v).flatten().tolist() for k, v in flags.items()}
    assert 0 in got["dark"] and 1 not in got["dark"]
    # "light" is relative to the data: no pixel as dark as the training images' 5th percentile
    # (the constant gray and the blurred copy qualify too, against this high-contrast noise)
    assert 1 in got["light"] and 0 not in got["light"]
    assert 2 in got["low_information"] and 2 in got["low_contrast"]
    assert 3 in got["blurry"] and 4 not in got["blurry"]
    assert not any(i in v for v in got.values() for i in (4, 5, 6))
    assert got["grayscale"] == []


def test_grayscale_in_colour_and_properties_by_hand() -> None:
    rgb = _noise(3, 2, c=3)
    rgb[1] = rgb[1, :1].expand(3, -1, -1)
    assert image_properties(rgb)["grayscale"].tolist() == [False, True, False]
    # entropy of a two-level image with equal halves is 1 bit; PIL agrees on noise
    half = torch.zeros(1, 4, 4, dtype=torch.long)
    half[:, :2] = 200
    assert entropy_bits(half).tolist() == pytest.approx([1.0])
    g = _noise(1, 3)[0, 0]
    assert float(entropy_bits(g[None].long())) == pytest.approx(
        Image.fromarray(g.numpy()).entropy(), abs=1e-9
    )
    # Laplacian of x^2 along columns is 2 everywhere in the interior: variance 0
    ramp = (torch.arange(6.0) ** 2).expand(6, 6)[None].long()
    assert float(laplacian_variance(ramp)) == pytest.approx(0.0)


def test_duplicates_and_leakage_on_planted_copies() -> None:
    train_x, test_x = _noise(30, 4), _noise(12, 5)
    train_y, test_y = torch.arange(30) % 3, torch.arange(12) % 3
    train_x[9] = train_x[2]  # a copy within train, same label? 9 % 3 == 0, 2 % 3 == 2: other label
    test_x[5], test_x[7] = train_x[4], train_x[10]  # leaks: test 5 (label 2) vs train 4 (label 1)
    test_y[7] = train_y[10]
    test_x[11] = test_x[0]
    within = exact_within(train_x, train_y)
    assert [(p.a, p.b, p.same_label) for p in within] == [(9, 2, False)]
    across = exact_across(train_x, train_y, test_x, test_y)
    assert [(p.a, p.b, p.same_label) for p in across] == [(5, 4, False), (7, 10, True)]
    assert [(p.a, p.b) for p in exact_within(test_x, test_y)] == [(11, 0)]
    # a brightened copy is a near duplicate (correlation 1), not an exact one
    bright = (test_x[3].int() + 20).clamp(0, 255).to(torch.uint8)
    x = torch.cat([test_x, bright[None]])
    near = near_within(pixel_signature(x), torch.arange(13), torch.arange(13) % 3, 0.99)
    assert {(p.a, p.b) for p in near} == {(11, 0), (12, 3)}


def test_error_test_matches_a_hand_table() -> None:
    flags = torch.tensor([True] * 4 + [False] * 6)
    correct = torch.tensor([False, False, False, True] + [True] * 5 + [False])
    rate_f, rate_o, p = error_test(flags, correct)
    from scipy.stats import fisher_exact

    assert (rate_f, rate_o) == (0.75, 1 / 6)
    assert p == pytest.approx(fisher_exact([[3, 1], [1, 5]])[1])


def _ctx(split, model):  # type: ignore[no-untyped-def]
    from stresslab.probes.base import ProbeContext
    from stresslab.probes.predictions import Predictions

    model.eval()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=64)
    return ProbeContext(model, split, torch.device("cpu"), 0, 64, preds, preds, sample_seed=42)


def test_probe_end_to_end_flags_leaks_with_other_labels() -> None:
    split = make_split(n_train=90, n_val=10, n_test=45, classes=3, seed=6)
    split.test_x[3] = split.train_x[8]
    split.test_y[3] = (split.train_y[8] + 1) % 3
    split.test_x[10] = 0
    torch.manual_seed(0)
    res = build_probe("data_audit", {"max_train": 60, "max_test": 30}).run(_ctx(split, TinyNet(split.info)))
    m = res.metrics
    assert m["duplicates.exact:test-train"] == 1 and m["n_test_leaked"] >= 1
    assert any("exact pixel copies of training images (1 with another label)" in w for w in res.warnings)
    offer = res.offer
    assert offer is not None
    assert int(split.test_index[3]) in offer.issues["leaked_other_label"]  # type: ignore[attr-defined]
    assert res.data["samples"] == {"train": 60, "test": 30}
    assert m["imbalance_ratio"] == 1.0


def test_agrees_with_cleanvision_on_planted_issues(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cleanvision")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_data_audit.py"
    spec = importlib.util.spec_from_file_location("bench_data_audit", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cleanvision_flags = bench.cleanvision_flags

    x = torch.cat([_noise(40, 7), torch.zeros(2, 1, 16, 16, dtype=torch.uint8)])
    x[5] = x[6]
    theirs = cleanvision_flags(x, tmp_path)
    assert set(np.flatnonzero(theirs["dark"])) >= {40, 41}
    assert {5, 6} <= set(np.flatnonzero(theirs["exact_duplicates"]))


def test_pixel_signature_in_chunks_equals_one_pass() -> None:
    x = torch.randint(0, 256, (11, 3, 20, 18), dtype=torch.uint8)
    whole = pixel_signature(x, chunk=64)
    assert torch.equal(pixel_signature(x, chunk=4), whole)
    assert torch.equal(pixel_signature(x), whole)  # the default chunk: by values, not images
    props, one_pass = image_properties(x), image_properties(x, chunk=64)
    assert all(torch.equal(props[k], one_pass[k]) for k in props)
    from stresslab.probes.data_audit.properties import CHUNK_VALUES, chunk_images

    assert chunk_images(torch.zeros(1, 3, 96, 96, dtype=torch.uint8)) == CHUNK_VALUES // (3 * 96 * 96) == 58
    # Hand check: a 16x16 gray image is not shrunk; its signature is its pixels minus their mean.
    g = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)
    expected = g.flatten(1).float() - g.float().mean()
    assert torch.allclose(pixel_signature(g), expected)
