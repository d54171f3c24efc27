"""Where a run's per-image work executes: ``backend: local`` (this process, the default) or
``backend: ray`` (shards of test indices as Ray tasks; see :mod:`stresslab.shards`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from stresslab.data.base import DatasetInfo
from stresslab.models import build_model
from stresslab.plugins import load_plugins
from stresslab.runs.prepare import Prepared
from stresslab.shards import LocalShards, RayShards, ShardExecutor


def rebuild_model(
    plugins: Sequence[str], name: str, info: DatasetInfo, args: dict[str, Any], source: str | None
) -> nn.Module:
    """The run's model, untrained, in a Ray task: the config's plugins first (they may
    register the model, corruptions or attacks the task uses), then :func:`build_model`."""
    load_plugins(plugins)
    return build_model(name, info, args, source)


def run_shards(prep: Prepared) -> ShardExecutor:
    """The executor for ``prep``'s run; use it as a context manager (a Ray instance it
    started is shut down on exit). Ray tasks rebuild the run's model, load its weights and
    run with the run's torch threads (``threads``, else this process's count), so they
    compute what this process would."""
    cfg = prep.cfg
    if cfg.backend == "local":
        return LocalShards()
    m = cfg.model
    factory = functools.partial(rebuild_model, list(cfg.plugins), m.name, prep.split.info, m.args, m.source)
    threads = cfg.threads or torch.get_num_threads()
    return RayShards(factory, threads=threads, address=cfg.ray_address, shards=cfg.shards)
