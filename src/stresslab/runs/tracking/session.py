"""Open the trackers a run's config switches on, and close them when the run ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stresslab.runs.config import RunConfig
from stresslab.runs.directory import RunDir
from stresslab.runs.tracking.base import Tracking


def start_tracking(cfg: RunConfig, run: RunDir) -> Tracking:
    """Start every tracker ``cfg.tracking`` switches on for ``run``; errors (a tracking server
    out of reach) propagate, so the run stops before training."""
    tracking = Tracking()
    try:
        if cfg.tracking.tensorboard:
            from stresslab.runs.tracking.tensorboard import TensorBoardTracker

            tracking.trackers.append(TensorBoardTracker(cfg, run))
        if cfg.tracking.mlflow:
            from stresslab.runs.tracking.mlflow import MlflowTracker

            tracking.trackers.append(MlflowTracker(cfg, run))
    except Exception:
        tracking.close("FAILED")  # the ones already started
        raise
    return tracking


@contextmanager
def track(cfg: RunConfig, run: RunDir) -> Iterator[Tracking]:
    """Tracking for the block: each tracker is closed on exit, ``FAILED`` when the block
    raised, ``KILLED`` on an interrupt, else ``FINISHED``."""
    tracking = start_tracking(cfg, run)
    status = "FINISHED"
    try:
        yield tracking
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception:
        status = "FAILED"
        raise
    finally:
        tracking.close(status)
