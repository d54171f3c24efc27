"""MLflow: the flattened config as params, per-epoch and final metrics, the report,
``metrics.json`` and the resolved config as artifacts.

Without ``tracking.mlflow_uri`` the runs go to a local file store, ``<run dir's
parent>/mlruns`` (``runs/mlruns`` for runs under the default ``runs/``; browse it with
``mlflow ui --backend-store-uri runs/mlruns``). MLflow 3 keeps its file store only when
``MLFLOW_ALLOW_FILE_STORE`` is set, so it is set to ``true`` for file stores unless the
environment already says otherwise. A ``group`` becomes one parent run per group (named
after it) with each run of the group nested under it (the ``mlflow.parentRunId`` tag).
The run's MLflow id is kept in ``RUN_DIR/tracking.json``: a resumed run logs into the same
MLflow run.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stresslab.errors import ConfigError
from stresslab.files import atomic_write_json, read_json
from stresslab.runs.tracking.base import finite, flat_config, require, run_label

if TYPE_CHECKING:
    from stresslab.runs.config import RunConfig
    from stresslab.runs.directory import RunDir

PARENT_TAG = "stresslab.group_parent"
MAX_PARAM_CHARS = 500  # the smallest limit among MLflow versions and stores
_BAD_KEY = re.compile(r"[^\w\-. /]")


def default_uri(run: RunDir) -> str:
    """``file://<run dir's parent>/mlruns`` (absolute)."""
    return (Path(run.path).resolve().parent / "mlruns").as_uri()


def _uri(given: str | None, run: RunDir) -> str:
    if not given:
        return default_uri(run)
    if "://" not in given and not given.startswith("file:"):
        return Path(given).resolve().as_uri()  # a folder: a file store there
    return given


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", name)


class MlflowTracker:
    """Logs one run to MLflow through ``MlflowClient`` (see the module docstring)."""

    name = "MLflow"

    def __init__(self, cfg: RunConfig, run: RunDir) -> None:
        require("mlflow", "mlflow", "tracking.mlflow")
        from mlflow.tracking import MlflowClient

        self.uri = _uri(cfg.tracking.mlflow_uri, run)
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.run_id = ""
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self._start(cfg, run)
        except Exception as exc:
            raise ConfigError(f"tracking.mlflow: cannot start an MLflow run at {self.uri}: {exc}") from exc

    def _start(self, cfg: RunConfig, run: RunDir) -> None:
        t = cfg.tracking
        record = Path(run.path) / "tracking.json"
        saved = read_json(record).get("mlflow", {}) if record.is_file() else {}
        if saved.get("uri") == self.uri and saved.get("run_id"):
            self.run_id = str(saved["run_id"])
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self._experiment(t.experiment)
        tags = {
            "stresslab.run_dir": str(Path(run.path).resolve()),
            "stresslab.dataset": cfg.data.dataset,
            "stresslab.model": cfg.model.source or cfg.model.name,
        }
        if t.group:
            tags["stresslab.group"] = t.group
            tags["mlflow.parentRunId"] = self._parent(experiment, t.group)
        self.run_id = self.client.create_run(experiment, run_name=run_label(t, run), tags=tags).info.run_id
        atomic_write_json(
            record, {"mlflow": {"uri": self.uri, "run_id": self.run_id, "experiment": t.experiment}}
        )
        self._log_params(flat_config(cfg))

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # created meanwhile by a run beside this one
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _parent(self, experiment: str, group: str) -> str:
        """The group's parent run, created on first use. Runs starting at once may each
        create one: all keep the oldest and the others are deleted."""

        def oldest() -> Any:
            runs = self.client.search_runs([experiment], filter_string=f"tags.`{PARENT_TAG}` = '{group}'")
            return min(runs, key=lambda r: (r.info.start_time, r.info.run_id), default=None)

        found = oldest()
        if found is not None:
            return str(found.info.run_id)
        mine = self.client.create_run(experiment, run_name=group, tags={PARENT_TAG: group}).info.run_id
        self.client.set_terminated(mine)  # a container: its runs carry the results
        first = str(oldest().info.run_id)
        if first != mine:
            self.client.delete_run(mine)
        return first

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(_key(k), str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(k), v, now, step) for k, v in finite(values).items()]
        for i in range(0, len(items), 1000):  # and at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_epoch(self, record: dict[str, float]) -> None:
        """Metrics ``epoch/<key>`` at step ``record["epoch"]``."""
        step = int(record.get("epoch", 0))
        self._log_metrics({f"epoch/{k}": v for k, v in record.items() if k != "epoch"}, step)

    def finish(self, run: RunDir, metrics: dict[str, float]) -> None:
        """``metrics.json``'s values under their own names, then the report, ``metrics.json``
        and ``config.resolved.yaml`` as artifacts."""
        step = len(read_json(run.history)) if run.history.is_file() else 0
        self._log_metrics(metrics, step)
        for path in (run.report, run.metrics, run.config):
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        """End the MLflow run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        self.client.set_terminated(self.run_id, status=status)
