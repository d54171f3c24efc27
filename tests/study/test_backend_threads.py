"""Threads per run come from the study's ``resources`` on every backend: the same study run
locally and as Ray tasks (a real local Ray instance) gives bit-equal predictions, and each
run's env.json records the threads it used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stresslab.runs.saved_predictions import load_predictions
from stresslab.study import run_study
from stresslab.study.backends import RayBackend, SequentialBackend
from stresslab.study.spec import Resources
from tests.ray_helpers import local_ray  # noqa: F401  (a fixture)

RUNS = ("a/seed-0", "a/seed-1", "b/seed-0", "b/seed-1")


def _study(tmp: Path, root: str) -> Path:
    """2 arms x 2 seeds, 1 epoch of a tiny CNN; the config leaves `threads` unset."""
    spec = {
        "name": "threads",
        "base": {
            "data": {"dataset": "fashion_mnist", "root": root, "train_subset": 300, "test_subset": 200},
            "model": {"name": "custom_cnn", "args": {"widths": [8, 16], "fc": 32}},
            "train": {"epochs": 1, "batch_size": 64, "amp": "bf16"},
            "probes": {"evaluation": {}},
        },
        "seeds": [0, 1],
        "arms": {"a": {}, "b": {"train.label_smoothing": 0.1}},
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _probs(sdir: Path, run: str) -> np.ndarray:
    return np.asarray(load_predictions(sdir / "runs" / run / "predictions.npz").probs)


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
@pytest.mark.parametrize("threads", [1, 2])
def test_local_and_ray_runs_are_bit_equal(threads: int, tmp_path: Path, fmnist_root: str) -> None:
    study = _study(tmp_path, fmnist_root)
    resources = Resources(cpus=threads)
    local = run_study(study, out=tmp_path / "local", backend=SequentialBackend(resources), report=False)
    ray = run_study(study, out=tmp_path / "ray", backend=RayBackend(resources), report=False)
    assert not local.failed and not ray.failed
    for sdir in (tmp_path / "local", tmp_path / "ray"):
        for run in RUNS:
            env = json.loads((sdir / "runs" / run / "env.json").read_text())
            assert env["torch_threads"] == threads, (sdir, run)
    for run in RUNS:
        a, b = _probs(tmp_path / "local", run), _probs(tmp_path / "ray", run)
        assert a.dtype == np.float32 and np.array_equal(a, b), run
