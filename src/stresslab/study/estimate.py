"""A study before it runs: its runs, their training time from a short timing probe, and the
smallest difference it could detect, judged by a finished study of the same base."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stresslab.errors import StresslabError
from stresslab.files import read_json
from stresslab.metrics.power import detectable_difference, detectable_flip_difference
from stresslab.runs.config import RunConfig
from stresslab.study.aggregate import METRICS
from stresslab.study.plan import StudyDir
from stresslab.study.spec import StudySpec

log = logging.getLogger(__name__)
PROBE_STEPS = 3  # timed optimizer steps per distinct training setup (after one warm-up step)


@dataclass(frozen=True)
class RunPlan:
    """One run a study would execute: its arm, seed, overrides and estimated training time
    (seconds of training steps only; validation and probes are not included)."""

    arm: str
    seed: int
    overrides: dict[str, Any]
    train_images: int
    seconds_per_step: float
    train_seconds: float


def time_training_step(
    cfg: RunConfig, steps: int = PROBE_STEPS, threads: int | None = None
) -> tuple[float, int]:
    """Seconds per optimizer step of ``cfg`` (its model, batch size, augmentation, precision)
    on one batch of its training images, and the size of its training set.

    Trains a fresh model for ``steps + 1`` one-step epochs without validation or checkpoints
    and averages all but the first (warm-up) step. ``threads`` as a study run would get
    (the config's own ``threads`` first).
    """
    from stresslab.devices import pick_device
    from stresslab.models.factory import build_model
    from stresslab.runs.prepare import load_data, seed_everything
    from stresslab.train.loop import train

    threads = cfg.threads or threads  # a config's own threads win, as in the run
    if threads:
        torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    split = load_data(cfg)
    n = min(len(split.train_y), cfg.train.batch_size)
    empty_x, empty_y = split.train_x[:0], split.train_y[:0]
    small = dataclasses.replace(
        split, train_x=split.train_x[:n], train_y=split.train_y[:n], val_x=empty_x, val_y=empty_y
    )
    model = build_model(cfg.model.name, split.info, cfg.model.args, cfg.model.source, cfg.model.weights)
    tcfg = cfg.train.model_copy(update={"epochs": steps + 1})
    result = train(model, small, tcfg, device=pick_device(cfg.device), seed=cfg.seed)
    secs = [float(r["seconds"]) for r in result.history[1:]]
    return sum(secs) / len(secs), len(split.train_y)


def plan_runs(spec: StudySpec, threads: int | None = None) -> list[RunPlan]:
    """Every arm x seed with its estimated training time; one timing probe per distinct
    (data, model, training) setup, so seeds and identical arms share a measurement."""
    measured: dict[str, tuple[float, int]] = {}
    out = []
    for arm, a in spec.arms.items():
        for seed in spec.seeds:
            cfg = spec.config(arm, seed)
            key = repr((cfg.data, cfg.model, cfg.train.model_copy(update={"epochs": 0}), cfg.device))
            if key not in measured:
                t0 = time.perf_counter()
                measured[key] = time_training_step(cfg, threads=threads)
                log.info("timing probe for arm %s: %.1f s", arm, time.perf_counter() - t0)
            per_step, n_train = measured[key]
            steps = math.ceil(n_train / cfg.train.batch_size) * cfg.train.epochs
            out.append(RunPlan(arm, seed, dict(a.overrides), n_train, per_step, per_step * steps))
    return out


def detectable_like(summary: dict[str, Any], n_seeds: int) -> list[dict[str, Any]]:
    """Per headline metric, the difference a study with ``n_seeds`` paired seeds could detect
    at 80% power, from a finished study's ``study.json`` (``summary``).

    The standard deviation of one seed's difference is the root mean square of the finished
    study's per-arm values (``sd`` of each arm's difference to its baseline); when it has no
    second arm, ``sqrt(2)`` times the baseline's seed standard deviation (two independent
    seeds). For accuracy, the pooled per-image test's detectable difference follows from the
    baseline's churn between seeds (discordant share ``2 churn / n_test``).
    """
    base = summary.get("baseline")
    arms = summary.get("arms", {})
    out = []
    for m in METRICS:
        if not m.spread or m.key == "train_seconds":
            continue
        sds = [
            float(rec["vs_baseline"][m.key]["sd"])
            for arm, rec in arms.items()
            if arm != base and rec.get("vs_baseline", {}).get(m.key, {}).get("sd") is not None
        ]
        source = "per-seed differences of its arms"
        if sds:
            sd: float | None = math.sqrt(sum(s * s for s in sds) / len(sds))
        else:
            std = arms.get(base, {}).get("metrics", {}).get(m.key, {}).get("std")
            sd = None if std is None else math.sqrt(2.0) * float(std)
            source = "its baseline's seed spread"
        if sd is None:
            continue
        out.append(
            {
                "metric": m.key,
                "label": m.label,
                "percent": m.percent,
                "sd": sd,
                "source": source,
                "detectable": detectable_difference(sd, n_seeds),
            }
        )
    churn, n_test = summary.get("churn", {}).get(base), int(summary.get("n_test_common", 0))
    if churn is not None and n_test:
        rate = min(1.0, 2.0 * float(churn) / n_test)
        flip = detectable_flip_difference(rate, n_test, n_seeds)
        out.append(
            {
                "metric": "accuracy_pooled",
                "label": "accuracy (pooled per-image test)",
                "percent": True,
                "sd": None,
                "source": f"its baseline's churn ({float(churn):.1f} of {n_test} images)",
                "detectable": flip,
            }
        )
    return out


def read_finished(study_dir: str | Path) -> tuple[StudySpec, dict[str, Any]]:
    """A finished study's spec and ``study.json``; errors name the directory."""
    sdir = StudyDir.open(study_dir)
    if not sdir.summary.is_file():
        raise StresslabError(f"{sdir.path} has no study.json yet: finish it (or `stresslab report` it) first")
    return sdir.spec(), dict(read_json(sdir.summary))


def _size(v: float | None, percent: bool) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v * 100:.2f} points" if percent else f"{v:.4g}"


def plan_lines(spec: StudySpec, workers: int = 1, like: str | Path | None = None) -> list[str]:
    """What ``stresslab study STUDY.yaml --plan`` prints: every run with its estimated
    training time (from :func:`plan_runs`, with the threads every run gets: ``resources.cpus``), the total,
    and, with ``like`` (a finished study directory), the detectable differences. Runs nothing;
    writes nothing."""
    if workers < 1:
        raise StresslabError(f"--workers must be >= 1, got {workers}")
    runs = plan_runs(spec, max(1, int(spec.resources.cpus)))
    lines = [f"study {spec.name}: {len(spec.arms)} arms x {len(spec.seeds)} seeds = {len(runs)} runs"]
    for r in runs:
        sets = ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "base config"
        lines.append(
            f"  {r.arm} seed {r.seed}: {sets}; {r.train_images} training images, "
            f"~{r.train_seconds / 60:.1f} min of training ({r.seconds_per_step:.3f} s per step)"
        )
    total = sum(r.train_seconds for r in runs)
    lines.append(
        f"estimated training time: {total / 60:.1f} min in all, ~{total / 60 / workers:.1f} min with "
        f"{workers} worker(s) (training steps only, from a {PROBE_STEPS}-step timing probe; "
        "validation and probes come on top)"
    )
    if like is not None:
        other, summary = read_finished(like)
        if other.base != spec.base or other.preset != spec.preset or other.set != spec.set:
            lines.append(f"note: {like} has another base config; its seed spread may not carry over")
        n = len(spec.seeds)
        lines.append(f"detectable differences at 80% power with {n} seeds (two-sided 5%), from {like}:")
        for d in detectable_like(summary, n):
            lines.append(
                f"  {d['label']}: {_size(d['detectable'], d['percent'])} or more (from {d['source']})"
            )
    return lines
