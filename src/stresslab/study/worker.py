"""Run one arm x seed: the same code path as ``stresslab run`` (:func:`runner.execute`).

A failure (bad arm, divergence, missing data) is caught and written next to the run
directory, so it never stops the other runs; the study report shows it.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from stresslab.study.plan import DONE, FAILED, RunJob

log = logging.getLogger(__name__)


def run_job(job: RunJob) -> dict[str, Any]:
    """Run ``job`` and return ``{arm, seed, status, error, seconds, failed_probes}``.

    ``status`` is ``done`` or ``failed``; a run whose probes failed is ``done`` with them
    listed (the run's own report shows them; a resume runs them again).
    """
    from stresslab.files import atomic_write_json
    from stresslab.runs import config as config_mod
    from stresslab.runs.execute import execute

    t0 = time.perf_counter()
    record: dict[str, Any] = {"arm": job.arm, "seed": job.seed, "error": None, "failed_probes": []}
    error_file = Path(job.error_file)
    try:
        cfg = config_mod.validate(job.config, f"arm {job.arm!r}")
        if cfg.threads is None and job.threads:
            cfg = cfg.model_copy(update={"threads": job.threads})
        run_dir = Path(job.run_dir)
        if not job.resume and run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
            shutil.rmtree(run_dir)  # an earlier attempt stopped before writing anything
        if job.resume:
            outcome = execute(cfg, resume=job.run_dir, show_progress=False)
        else:
            outcome = execute(cfg, out=job.run_dir, show_progress=False)
        record["failed_probes"] = list(outcome.failed_probes)
        record["status"] = DONE
        error_file.unlink(missing_ok=True)
    except Exception as e:  # one failed run must not stop the study
        record["status"] = FAILED
        record["error"] = f"{type(e).__name__}: {e}"
        log.error("run %s seed %d failed: %s", job.arm, job.seed, record["error"])
        atomic_write_json(
            error_file, {"error": record["error"], "traceback": traceback.format_exc(), "arm": job.arm}
        )
    record["seconds"] = time.perf_counter() - t0
    return record
