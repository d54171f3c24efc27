"""Experiment trackers, each off unless the config switches it on (``tracking:`` section).

TensorBoard (``tracking.tensorboard``, extra ``stresslab[tensorboard]``) and MLflow
(``tracking.mlflow``, extra ``stresslab[mlflow]``). The runner calls them through one hook,
:class:`Tracking`, opened by :func:`track`; :func:`check_trackers` runs before any data is
loaded, so a missing library stops a run before it starts and names the extra to install.
"""

from stresslab.runs.tracking.base import (
    Tracker,
    Tracking,
    check_trackers,
    flat_config,
    run_label,
)
from stresslab.runs.tracking.session import start_tracking, track

__all__ = ["Tracker", "Tracking", "check_trackers", "flat_config", "run_label", "start_tracking", "track"]
