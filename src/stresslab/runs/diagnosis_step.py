"""The run's diagnosis step: after the probes, join their evidence per failure
(:mod:`stresslab.diagnosis`) and write ``RUN_DIR/diagnosis.csv`` and ``results/diagnosis.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from stresslab.diagnosis import TestSet, diagnose, to_result, write_csv
from stresslab.probes.base import ProbeContext, ProbeResult
from stresslab.runs.directory import RunDir
from stresslab.runs.storage import save_result

log = logging.getLogger(__name__)

NAME = "diagnosis"


def records(results: dict[str, ProbeResult], failed: list[str]) -> dict[str, dict[str, Any]]:
    """The probes' results as the dicts they are saved as (``data``, ``metrics``, ``offer``);
    failed probes are left out, so their evidence is reported missing."""
    return {
        name: {
            "data": r.data,
            "metrics": r.metrics,
            "offer": asdict(r.offer) if r.offer is not None else None,  # type: ignore[call-overload]
        }
        for name, r in results.items()
        if name not in failed
    }


def test_set(ctx: ProbeContext) -> TestSet:
    """The arrays the diagnosis reads, from the run's context (no copies of the images)."""
    p, split = ctx.predictions, ctx.split
    emb = p.embeddings.float().numpy() if p.embeddings.ndim == 2 and p.embeddings.shape[1] else None
    return TestSet(
        probs=p.probs.float().numpy(),
        labels=p.labels.long().numpy(),
        index=p.index.long().numpy(),
        class_names=tuple(ctx.info.class_names),
        images=split.test_x.numpy(),
        embeddings=emb,
        train_images=split.train_x.numpy(),
        train_labels=split.train_y.numpy(),
        background=ctx.info.background,
    )


def run_diagnosis(run: RunDir, ctx: ProbeContext, failed: list[str]) -> ProbeResult | None:
    """Diagnose the run's failures and save the table and the record; returns the record.
    Does nothing (returns None) unless the ``evaluation`` probe ran and did not fail."""
    if "evaluation" not in ctx.results or "evaluation" in failed:
        return None
    t0 = time.perf_counter()
    d = diagnose(records(ctx.results, failed), test_set(ctx), seed=ctx.seed)
    write_csv(run.diagnosis, d.rows)
    result = to_result(d, test_set(ctx))
    seconds = time.perf_counter() - t0
    save_result(run, NAME, result, seconds)
    log.info("diagnosis: %d failures diagnosed in %.1f s", len(d.rows), seconds)
    return result
