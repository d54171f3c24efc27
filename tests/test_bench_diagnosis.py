"""The planted-fault benchmark's damage, foreign images and scoring, on small inputs."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diagnosis.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_diagnosis", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _shirt() -> np.ndarray:
    x = np.zeros((1, 1, 28, 28), dtype=np.uint8)
    x[0, 0, 4:24, 8:20] = 200
    x[0, 0, 10:14, 10:18] = 120  # some inner structure
    return x


def test_each_damage_changes_the_image_as_documented(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = _shirt()
    f = x.astype(float)
    out = {kind: bench._damage(x, kind, rng) for kind in bench.DAMAGE}
    assert all(o.shape == x.shape and o.dtype == np.uint8 for o in out.values())
    assert 0.07 * f.mean() <= out["dark"].mean() <= 0.26 * f.mean()
    assert out["low_contrast"].std() <= 0.26 * f.std() and abs(out["low_contrast"].mean() - 128) < 30
    assert out["wash_out"].min() >= 255 * 0.55 - 1  # the black background moved towards white
    assert (out["noise"][0, 0, :4] > 0).mean() > 0.3  # the plain background is no longer plain
    blocks = out["blocky"][0, 0].reshape(7, 4, 7, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()  # constant on every 4x4 block
    assert out["blocky"].astype(float).mean() == pytest.approx(f.mean(), abs=1)
    gray = (out["occlusion"] != x)[0, 0]
    rows, cols = np.flatnonzero(gray.any(axis=1)), np.flatnonzero(gray.any(axis=0))
    assert 10 <= np.ptp(rows) + 1 <= 14 and 10 <= np.ptp(cols) + 1 <= 14  # one box, 10-14 on a side
    step = np.abs(np.diff(out["blur"].astype(float), axis=-1)).max()
    assert step < 0.5 * np.abs(np.diff(f, axis=-1)).max()  # no sharp edge left
    with pytest.raises(ValueError, match="unknown damage"):
        bench._damage(x, "rain", rng)


def test_foreign_images_have_structure(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    t = bench._textures(6, rng)
    p = bench._photo_crops(4, rng)
    for imgs in (t, p):
        assert imgs.shape[1:] == (1, 28, 28) and imgs.dtype == np.uint8
        assert (imgs.reshape(len(imgs), -1).std(axis=1) >= 0.1 * 255 - 1).all()


def test_score_by_hand(bench) -> None:  # type: ignore[no-untyped-def]
    planted = {"label_error": [1, 2], "image_quality": [3], "out_of_distribution": [4, 5], "shortcut": [6]}
    rows = [
        {"index": "1", "cause": "label_error"},
        {"index": "2", "cause": "model_error"},
        {"index": "4", "cause": "out_of_distribution"},
        {"index": "9", "cause": "label_error"},  # not planted
        {"index": "3", "cause": "out_of_distribution"},
    ]
    got = {s["kind"]: s for s in bench.score(rows, planted)}
    assert (got["label_error"]["recall"], got["label_error"]["precision"]) == (0.5, 0.5)
    assert (got["out_of_distribution"]["recall"], got["out_of_distribution"]["precision"]) == (1.0, 0.5)
    assert got["image_quality"]["recall"] == 0.0 and np.isnan(got["image_quality"]["precision"])
    assert np.isnan(got["shortcut"]["recall"])
