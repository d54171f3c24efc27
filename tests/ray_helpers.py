"""A local Ray instance for tests: 2 CPUs, a small object store, stresslab on the workers' path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (its start-up is the slow part); skipped
    without Ray. Code that finds Ray running joins it and leaves it running."""
    ray = pytest.importorskip("ray")
    from stresslab.shards import python_path

    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": python_path()}},
    )
    yield
    ray.shutdown()
