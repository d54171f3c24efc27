"""The tracker contract and the one hook the runner calls: :class:`Tracking`.

A tracker mirrors a run into an experiment tracker (TensorBoard, MLflow): it starts when
the run directory exists, gets every training epoch's record, and at the end the final
metrics and the run directory's report. Tracking is a copy, never the record: a tracker
that fails while logging is dropped with a warning and the run goes on.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stresslab.errors import ConfigError

if TYPE_CHECKING:
    from stresslab.runs.config import RunConfig, TrackingConfig
    from stresslab.runs.directory import RunDir

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """One experiment tracker for one run."""

    name: str

    def log_epoch(self, record: dict[str, float]) -> None:
        """One epoch of ``history.json`` (``epoch``, ``train_loss``, ``val_acc``, ``lr``, ...)."""

    def finish(self, run: RunDir, metrics: dict[str, float]) -> None:
        """The final metrics (``metrics.json``: ``{"probe.metric": value}``) and the run's files."""

    def close(self, status: str) -> None:
        """End the run: ``status`` is ``FINISHED``, ``FAILED`` or ``KILLED``."""


def require(module: str, extra: str, setting: str) -> Any:
    """Import ``module``, or raise :class:`ConfigError` naming ``setting`` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{setting} is on but {module} cannot be imported ({exc}); install it with "
            f"pip install 'stresslab[{extra}]'"
        ) from None


def check_trackers(cfg: TrackingConfig) -> None:
    """Raise :class:`ConfigError` (naming the extra to install) when a tracker that ``cfg``
    switches on cannot be imported. Called before any data is loaded."""
    if cfg.tensorboard:
        require("torch.utils.tensorboard", "tensorboard", "tracking.tensorboard")
    if cfg.mlflow:
        require("mlflow", "mlflow", "tracking.mlflow")


def flat_config(cfg: RunConfig) -> dict[str, str | int | float | bool]:
    """The config as ``{"train.lr": 0.001, ...}``: nested keys joined by dots, lists as JSON
    text, ``None`` as ``"null"``; the ``tracking`` section is left out."""
    from stresslab.runs.config import to_dict

    out: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        else:
            out[prefix] = json.dumps(value)

    data = to_dict(cfg)
    data.pop("tracking", None)
    walk("", data)
    return out


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``metrics`` as floats (trackers reject NaN or skip it)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


def run_label(cfg: TrackingConfig, run: RunDir) -> str:
    """The run's name in the trackers: ``tracking.run_name``, else the run directory's name."""
    return cfg.run_name or Path(run.path).resolve().name


class Tracking:
    """The run's trackers behind one hook (none when tracking is off)."""

    def __init__(self, trackers: list[Tracker] | None = None) -> None:
        self.trackers = list(trackers or [])
        self.run_failed = False

    def _each(self, what: str, call: Any) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:  # tracking is a copy: the run goes on without it
                log.warning(
                    "%s tracking failed while %s (%r); it stops for this run", tracker.name, what, exc
                )
                self.trackers.remove(tracker)

    def on_epoch(self, record: dict[str, float]) -> None:
        """Per-epoch hook for training (:class:`stresslab.train.callbacks.EpochTracker`)."""
        self._each("logging an epoch", lambda t: t.log_epoch(record))

    def finish(self, run: RunDir, metrics: dict[str, float]) -> None:
        """Log the final metrics, figures and report of ``run`` (a run with failed probes,
        marked ``FAILED``, is closed as failed)."""
        self.run_failed = run.failed.is_file()
        self._each("logging the results", lambda t: t.finish(run, metrics))

    def close(self, status: str) -> None:
        """End every tracker's run with ``status`` (``FAILED`` after :meth:`finish` saw a failed run)."""
        status = "FAILED" if self.run_failed and status == "FINISHED" else status
        self._each("closing", lambda t: t.close(status))
