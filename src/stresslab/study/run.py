"""A study end to end: validate, plan, run (any backend), then aggregate and report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stresslab.errors import StresslabError
from stresslab.runs.directory import default_run_path
from stresslab.study.backends import Backend, make_backend
from stresslab.study.plan import StudyDir
from stresslab.study.spec import StudySpec, load_study

log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    """The study directory, this invocation's run records and where its time went (s)."""

    study_dir: StudyDir
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # study.json, when the report was made

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "done"]


def run_study(
    study: str | Path | StudySpec | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    workers: int = 1,
    backend: str | Backend = "local",
    ray_address: str | None = None,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    report: bool = True,
) -> StudyOutcome:
    """Run every arm x seed of ``study`` not yet done, then write ``study.json`` and ``report.html``.

    ``study`` is a study file or a parsed spec; with ``resume`` (a study directory) it may
    be left out, and when given it must resolve to the same runs. Every run is validated
    before any starts. Finished runs (DONE) are skipped, started ones resume from their last
    checkpoint. ``on_run_done(record)`` is called in this process after each run.
    """
    t_start = time.perf_counter()
    if resume is not None:
        sdir = StudyDir.open(Path(resume).resolve())
        spec = sdir.spec()
        if study is not None:
            given = study if isinstance(study, StudySpec) else load_study(study)
            _check_same(spec, given, sdir)
    else:
        if study is None:
            raise StresslabError("give a study file (or --resume STUDY_DIR)")
        spec = study if isinstance(study, StudySpec) else load_study(study)
        sdir = StudyDir.create(Path(out or default_run_path(spec.name)).resolve(), spec)
    runner = (
        backend
        if isinstance(backend, Backend)
        else make_backend(backend, workers, spec.resources, ray_address)
    )
    outcome = StudyOutcome(sdir)
    with sdir.lock():
        jobs = sdir.jobs(spec, threads=runner.threads)
        total = len(spec.arms) * len(spec.seeds)
        log.info("study %s: %d of %d runs to do in %s", spec.name, len(jobs), total, sdir.path)
        t_runs = time.perf_counter()

        def done(rec: dict[str, Any]) -> None:
            outcome.records.append(rec)
            state = "done" if rec["status"] == "done" else f"FAILED ({rec['error']})"
            log.info("run %s seed %d: %s in %.1f s", rec["arm"], rec["seed"], state, rec["seconds"])
            if on_run_done is not None:
                on_run_done(rec)

        runner.run(jobs, done)
        outcome.seconds["runs_wall"] = time.perf_counter() - t_runs
        if report:
            from stresslab.study.report import render_study

            t_report = time.perf_counter()
            outcome.summary = render_study(sdir)
            outcome.seconds["report"] = time.perf_counter() - t_report
    outcome.seconds["total"] = time.perf_counter() - t_start
    outcome.seconds["in_runs"] = sum(float(r.get("seconds", 0.0)) for r in outcome.records)
    return outcome


def _check_same(saved: StudySpec, given: StudySpec, sdir: StudyDir) -> None:
    for arm in {*saved.arms, *given.arms}:
        if arm not in saved.arms or arm not in given.arms:
            raise StresslabError(f"the study file's arms differ from {sdir.path}'s (arm {arm!r})")
        for seed in {*saved.seeds, *given.seeds}:
            if seed not in saved.seeds or seed not in given.seeds:
                raise StresslabError(f"the study file's seeds differ from {sdir.path}'s (seed {seed})")
            if saved.config(arm, seed) != given.config(arm, seed):
                raise StresslabError(
                    f"arm {arm!r} changed since {sdir.path} was started; resume without the study file "
                    "to finish it as it was, or start a new study"
                )
