"""A run whose per-image work runs in shards as Ray tasks (a real local Ray instance with 2
CPUs) gives the metrics and predictions of the same run in one process."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stresslab.runs import config as config_mod
from stresslab.runs.execute import execute
from stresslab.runs.saved_predictions import load_predictions
from tests.ray_helpers import local_ray  # noqa: F401  (a fixture)

SHARDED = ("evaluation.", "corruption.", "adversarial.")


def _config(root: str, **top: Any) -> config_mod.RunConfig:
    raw: dict[str, Any] = {
        "threads": 1,
        "data": {"dataset": "fashion_mnist", "root": root, "train_subset": 100, "test_subset": 100},
        "model": {"name": "custom_cnn", "args": {"widths": [4, 8], "fc": 16}},
        "train": {"epochs": 0, "eval_batch_size": 32},  # the seeded initial weights,
        "probes": {
            "evaluation": {},
            "corruption": {
                "corruptions": ["gaussian_noise", "snow"],
                "severities": [2],
                "max_images": 0,
                "resolution": None,
            },
            "adversarial": {
                "attacks": {"pgd_linf": {"steps": 2}},
                "max_images": 48,
                "batch_size": 16,
                "convergence_check": False,
            },
        },
    }
    return config_mod.validate({**raw, **top}, "test config")


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_ray_shards_equal_one_process(
    tmp_path: Path, fmnist_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    here = execute(_config(fmnist_root), out=tmp_path / "here", show_progress=False)
    with caplog.at_level(logging.INFO, logger="stresslab.shards"):
        cfg = _config(fmnist_root, backend="ray", shards=3)
        there = execute(cfg, out=tmp_path / "ray", show_progress=False)
    assert "100 items in 2 Ray tasks" in caplog.text  # the predictions: 4 batches of 32
    assert "48 items in 3 Ray tasks" in caplog.text  # each attack: 3 batches of 16
    assert not here.failed_probes and not there.failed_probes
    a = json.loads((tmp_path / "here" / "metrics.json").read_text())
    b = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    sharded = {k: v for k, v in a.items() if k.startswith(SHARDED)}
    assert any(k.startswith("corruption.") for k in sharded) and any(
        k.startswith("adversarial.") for k in sharded
    )
    assert sharded == {k: v for k, v in b.items() if k.startswith(SHARDED)}
    pa, pb = (
        load_predictions(tmp_path / "here" / "predictions.npz"),
        load_predictions(tmp_path / "ray" / "predictions.npz"),
    )
    assert np.array_equal(pa.probs, pb.probs) and np.array_equal(pa.index, pb.index)
    for probe in ("corruption", "adversarial"):
        ra = json.loads((tmp_path / "here" / "results" / f"{probe}.json").read_text())
        rb = json.loads((tmp_path / "ray" / "results" / f"{probe}.json").read_text())
        assert ra["data"] == rb["data"], probe


def _tiny_model() -> tuple[Callable[[], Any], Any]:
    """A seeded tiny CNN for the 8x8 test split, and the factory Ray workers rebuild it with."""
    import functools

    import torch

    from stresslab.models import build_model
    from tests.conftest import make_split

    factory = functools.partial(build_model, "custom_cnn", make_split().info, {"widths": [4], "fc": 8})
    torch.manual_seed(0)
    return factory, factory()


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_transplant_test_in_ray_tasks_equals_one_process() -> None:
    import torch

    from stresslab.shards import LocalShards, RayShards
    from tests.test_shards import _transplant

    factory, model = _tiny_model()
    here, _ = _transplant(LocalShards(), model)
    shards = RayShards(factory, threads=1, shards=2)
    there, _ = _transplant(shards, model)
    assert torch.equal(here.preds, there.preds)
    assert (here.region, here.control) == (there.region, there.control)
    # The weights go to the object store once per model and weights version.
    assert shards._cache is not None
    shipped = shards._cache[1]
    _transplant(shards, model)
    assert shards._cache[1] is shipped
    with torch.no_grad():
        next(model.parameters()).mul_(-1.0)
    again, _ = _transplant(shards, model)
    assert shards._cache[1] is not shipped
    assert torch.equal(again.preds, _transplant(LocalShards(), model)[0].preds)


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_explain_maps_in_ray_tasks_equal_one_process(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from stresslab.shards import LocalShards, RayShards
    from tests.test_shards import _ctx, _explain, explained_tensors, further_tensors

    factory, model = _tiny_model()
    ctx = _ctx(LocalShards(), model)
    explained = _explain(ctx)
    here = explained_tensors(explained) | further_tensors(ctx, explained)
    with caplog.at_level(logging.INFO, logger="stresslab.shards"):
        ctx = _ctx(RayShards(factory, threads=1, shards=2), model)
        explained = _explain(ctx)
        there = explained_tensors(explained) | further_tensors(ctx, explained)
    assert "40 items in 2 Ray tasks" in caplog.text  # 3 batches of 16: 32 and 8 images
    assert "gradcam.sensitivity" in here  # ROAD and max-sensitivity in Ray tasks too
    assert sorted(here) == sorted(there) and "gradcam.true_maps" in here
    for key, value in here.items():
        torch.testing.assert_close(value, there[key], rtol=0, atol=0, equal_nan=True, msg=key)


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_shortcut_maps_in_ray_tasks_equal_one_process(caplog: pytest.LogCaptureFixture) -> None:
    from stresslab.probes.base import build_probe
    from stresslab.shards import LocalShards, RayShards
    from tests.test_shards import _ctx, _numbers

    factory, model = _tiny_model()
    settings = {"method": "gradcam", "max_images": 40, "n_transplant": 20}
    here = build_probe("shortcut", settings).run(_ctx(LocalShards(), model))
    with caplog.at_level(logging.INFO, logger="stresslab.shards"):
        there = build_probe("shortcut", settings).run(_ctx(RayShards(factory, threads=1, shards=2), model))
    # After the predictions (60 items), the Grad-CAM maps of the correctly classified test
    # and training images went to Ray as well.
    assert caplog.text.count("Ray tasks") >= 3 and "60 items in 2 Ray tasks" in caplog.text
    assert not any("Grad-CAM cannot run" in w for w in here.warnings)
    assert here.data.get("regions") and _numbers(here) == _numbers(there)
