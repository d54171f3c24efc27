"""A run as a Python object: :class:`Run` reads a run directory back (metrics, probe results,
history, warnings, report) and shows itself in Jupyter."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import StresslabError
from stresslab.files import read_json
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint, load_weights
from stresslab.probes.base import ProbeResult
from stresslab.report.render import flat_metrics
from stresslab.runs import config as config_mod
from stresslab.runs.checks import load_outcome
from stresslab.runs.config import RunConfig
from stresslab.runs.directory import RunDir
from stresslab.runs.storage import load_result, load_results

__all__ = ["Run", "Section"]


class Section:
    """One probe's section of the report; shows itself in Jupyter (``_repr_html_``)."""

    def __init__(self, probe: str, html: str, summary: list[str]) -> None:
        self.probe = probe
        self.html = html
        self.summary = summary

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        lines = "".join(f"\n  {line}" for line in self.summary)
        return f"<stresslab section {self.probe!r}>{lines}"


def _nan_for_null(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    # Strict JSON stored NaN (e.g. no validation set) as null.
    return [{k: math.nan if v is None else v for k, v in rec.items()} for rec in history]


def load_model(run: RunDir) -> tuple[nn.Module, dict[str, Any]]:
    """The run's final model in eval mode on the CPU, and its checkpoint metadata.

    Loads with ``weights_only=True`` (:func:`load_checkpoint`); the normalization layer's
    statistics come from the checkpoint's weights.
    """
    path = run.final_weights()
    ckpt = load_checkpoint(path)
    model_rec = ckpt.get("model") or {}
    names = tuple(ckpt.get("class_names") or ())
    channels = int(ckpt.get("channels") or 1)
    h, w = (int(v) for v in ckpt.get("image_size") or (28, 28))
    info = DatasetInfo("checkpoint", names, channels, h, w, (0.5,) * channels, (0.5,) * channels)
    model = build_model(str(model_rec.get("name")), info, model_rec.get("args"), model_rec.get("source"))
    load_weights(model, ckpt["state_dict"], path)
    model.eval()
    return model, {"channels": channels, "height": h, "width": w, "class_names": names}


class Run:
    """A run directory read back: what :func:`stresslab.run`, :func:`stresslab.probe` and
    :func:`stresslab.load` return.

    Attributes:
        path: the run directory.
        config: the resolved configuration the run used.
        metrics: flat ``{"probe.metric": value}``, as in ``metrics.json``.
        results: probe name -> :class:`~stresslab.probes.ProbeResult` (metrics, tables,
            warnings, summary, data; figures stay PNG files, listed in
            ``data["figure_files"]``), in report order.
        diagnosis: the diagnosis of the failures (``data["rows"]``: one per failure with
            its cause and evidence; see :mod:`stresslab.diagnosis`), or None.
        history: per-epoch training records (``epoch``, ``train_loss``, ``val_acc``, ...);
            empty when nothing was trained.
        warnings: warnings about the run itself (training divergence, the data).
        failed_probes: probes that raised (their errors are in the report).
        complete: the run finished (``DONE``).
        checks: the checks' outcome (``checks.json``: ``passed``, one record per check), or
            None when no checks ran.

    In Jupyter a Run shows its summary cards, warnings and key figures, with a link to the
    full report; :meth:`show` shows one probe's section and :meth:`save` keeps the report.
    """

    def __init__(self, path: str | Path, *, keep_alive: Any = None) -> None:
        run = RunDir.open(path)
        self._run = run
        self._keep_alive = keep_alive  # a temporary directory lives as long as this object
        self.path = run.path
        self.config: RunConfig = config_mod.resolve(run.config)
        records = load_results(run)  # in report order
        loaded = {name: load_result(run.result_json(name)) for name in records}
        self.diagnosis: ProbeResult | None = loaded.pop("diagnosis", None)
        self.results: dict[str, ProbeResult] = loaded
        self.metrics: dict[str, float] = (
            dict(read_json(run.metrics)) if run.metrics.is_file() else flat_metrics(records)
        )
        self.history = _nan_for_null(read_json(run.history)) if run.history.is_file() else []
        notes = read_json(run.run_warnings) if run.run_warnings.is_file() else []
        self.warnings: list[str] = [str(w.get("message", "")) for w in notes]
        self.failed_probes: list[str] = run.failed_probes()
        self.complete = run.done.is_file()
        self.checks: dict[str, Any] | None = load_outcome(run.path)

    def model(self) -> nn.Module:
        """The run's final model (the weights its probes used), in eval mode on the CPU.

        Loaded with ``weights_only=True``: nothing in the checkpoint is executed."""
        return load_model(self._run)[0]

    @property
    def report_path(self) -> Path:
        """``RUN_DIR/report.html``: self-contained, readable offline."""
        return self._run.report

    def save(self, path: str | Path) -> Path:
        """Keep the run beyond this object (a :func:`stresslab.probe` run without ``out`` lives
        in a temporary directory removed with it).

        A path ending in ``.html`` receives the self-contained report alone; any other path
        receives a copy of the whole run directory (report, metrics, results), which
        :func:`stresslab.load` reads back. Returns the path written. An existing file, or a
        folder that is not empty, is refused.
        """
        target = Path(path)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StresslabError(f"save: {target} already exists; choose a new file or an empty folder")
        if not self.report_path.is_file():
            from stresslab.runs.report import render

            render(self._run)
        if target.suffix.lower() in (".html", ".htm"):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.report_path, target)
            return target
        shutil.copytree(self.path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("run.lock"))
        return target

    def show(self, probe: str) -> Section:
        """One probe's section of the report (summary, warnings, figures, tables; tables cut
        at 50 rows), shown as HTML in Jupyter."""
        from stresslab.runs.inline import section_html

        if probe not in self.results:
            names = ", ".join(self.results) or "none"
            raise StresslabError(f"show: this run has no results of probe {probe!r}; it has: {names}")
        return Section(probe, section_html(self._run, probe), list(self.results[probe].summary))

    def _href(self) -> str:
        report = self.report_path.resolve()
        try:
            return report.relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return report.as_uri()

    def _repr_html_(self) -> str:
        from stresslab.runs.inline import run_html

        return run_html(self._run, self._href())

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        acc = self.metrics.get("evaluation.accuracy")
        shown = f", accuracy {acc:.4f}" if acc is not None else ""
        probes = ", ".join(self.results) or "none"
        return f"<stresslab Run {str(self.path)!r}: {state}{shown}; probes: {probes}>"
