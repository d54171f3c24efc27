"""One run, start to end: config -> data -> model -> train -> predictions -> probes -> report.

Everything that can be checked is checked before the run directory is created (see
:func:`prepare`), so a mistake in a config leaves nothing behind. A run that fails later
leaves ``RUN_DIR/FAILED`` saying at which stage and why: ``--resume`` continues it and a
new run with the same ``--out`` replaces it. A complete run (``DONE``) is never replaced.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stresslab.data.cache import release_pages
from stresslab.errors import StresslabError
from stresslab.files import atomic_write_json, atomic_write_text, read_json
from stresslab.models import build_model
from stresslab.models.weights import check_compatible, load_checkpoint, load_weights
from stresslab.probes.base import ProbeContext, ProbeResult
from stresslab.probes.predictions import Predictions
from stresslab.progress import ProgressReporter
from stresslab.runs import config as config_mod
from stresslab.runs.config import RunConfig
from stresslab.runs.diagnosis_step import run_diagnosis
from stresslab.runs.directory import RunDir, default_run_path, environment
from stresslab.runs.prepare import Prepared, load_data, model_meta, prepare, probe_order, seed_everything
from stresslab.runs.saved_predictions import save_predictions
from stresslab.runs.sharding import run_shards
from stresslab.runs.storage import load_result, save_result
from stresslab.runs.tracking import Tracking, track
from stresslab.shards import ShardExecutor
from stresslab.train.checkpoint import save_checkpoint
from stresslab.train.divergence import loss_explosion
from stresslab.train.loop import train
from stresslab.train.pretrain import pretraining

__all__ = [
    "RunOutcome",
    "execute",
    "execute_prepared",
    "load_data",
    "model_meta",
    "prepare",
    "probe_order",
    "run_warnings",
    "seed_everything",
]

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """Where the run went, which probes failed (their errors are in the report) and the
    run-level warnings (training divergence, data) shown at the top of the report."""

    run_dir: RunDir
    metrics: dict[str, float] = field(default_factory=dict)
    failed_probes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, Any] | None = None  # checks.json, when the config has checks
    checks_error: str | None = None  # a check that could not be evaluated (an unknown key)


@dataclass
class _Stage:
    name: str = "setup"


def execute(
    cfg: RunConfig,
    *,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    show_progress: bool = True,
) -> RunOutcome:
    """Run ``cfg`` end to end and write the run directory (see :class:`RunDir`).

    Nothing is written until the config, probes, data, model and ``checkpoint`` have been
    checked. With ``resume``, ``cfg`` is read from that run directory, training continues
    from its last complete checkpoint and probes with saved results are not run again.
    """
    if resume is not None:
        run = RunDir.open(resume)
        cfg = config_mod.resolve(run.config)
        with run.lock(), _failure_recorded(run) as stage:
            run.failed.unlink(missing_ok=True)
            if checkpoint is None and run.source_checkpoint.is_file():
                checkpoint = read_json(run.source_checkpoint)["path"]  # a probe-only run keeps its model
            prep = prepare(cfg, checkpoint)
            with track(cfg, run) as tracking, run_shards(prep) as shards:
                return _execute(prep, run, True, show_progress, stage, tracking, shards)
    target = Path(out) if out is not None else default_run_path(config_mod.run_name(cfg))
    RunDir.check_new(target)  # refuse early, before the data is loaded
    return execute_prepared(prepare(cfg, checkpoint), target, show_progress=show_progress)


def execute_prepared(prep: Prepared, out: str | Path, *, show_progress: bool = True) -> RunOutcome:
    """Run what :func:`prepare` (or :func:`stresslab.probe`, for data and a model in memory)
    made ready, into the new run directory ``out``; see :func:`execute`."""
    run = RunDir.create(out)
    with run.lock(), _failure_recorded(run) as stage:
        atomic_write_text(run.config, config_mod.dump_yaml(prep.cfg))
        atomic_write_json(run.env, environment(prep.device, prep.cfg.seed))
        with track(prep.cfg, run) as tracking, run_shards(prep) as shards:
            return _execute(prep, run, False, show_progress, stage, tracking, shards)


@contextmanager
def _failure_recorded(run: RunDir) -> Iterator[_Stage]:
    """Write ``FAILED`` (stage, error, traceback) when the body raises an exception.

    An interrupt (Ctrl-C) records nothing: like a killed run, it is continued with --resume.
    """
    stage = _Stage()
    try:
        yield stage
    except Exception as e:
        _write_failed(run, stage.name, f"{type(e).__name__}: {e}", traceback.format_exc())
        raise


def _write_failed(run: RunDir, stage: str, error: str, trace: str = "") -> None:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(run.failed, {"stage": stage, "error": error, "traceback": trace, "time": now})
    log.error(
        "the run failed during %s; %s records why. Continue it with --resume %s, or start it over "
        "with the same --out.",
        stage,
        run.failed,
        run.path,
    )


def run_warnings(prep: Prepared, history: list[dict[str, float]]) -> list[dict[str, str]]:
    """Warnings about the run itself, as ``{"source", "message"}`` records: the data split's
    own warnings, files left out by ``skip_bad``, probes skipped for want of training images
    (each with its reason) or run on a split of the test set instead (each saying how), and a
    training loss that exploded."""
    out = [{"source": "data", "message": str(w)} for w in getattr(prep.split, "warnings", [])]
    for name, why in prep.skipped.items():
        out.append({"source": "probes", "message": f"probe {name} skipped: {why}"})
    for name, how in prep.on_test_split.items():
        out.append({"source": "probes", "message": f"probe {name} without training images: {how}"})
    skipped = prep.split.skipped
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        out.append({"source": "data", "message": f"{len(skipped)} unreadable files were left out: {shown}"})
    exploded = loss_explosion(history, prep.split.info.num_classes)
    if exploded:
        out.append({"source": "training", "message": exploded})
    return out


def _execute(
    prep: Prepared,
    run: RunDir,
    resuming: bool,
    show_progress: bool,
    stage: _Stage,
    tracking: Tracking,
    shards: ShardExecutor,
) -> RunOutcome:
    cfg, split, model, device = prep.cfg, prep.split, prep.model, prep.device
    progress = ProgressReporter(enabled=show_progress)
    stage.name = "training"
    history = _trained_history(prep, run, resuming, progress, tracking)
    model.to(device).eval()
    warnings = run_warnings(prep, history)
    atomic_write_json(run.run_warnings, warnings)

    stage.name = "predictions"
    preds, val_preds = _predictions(prep, run, shards)
    batch = cfg.train.eval_batch_size
    ctx = ProbeContext(
        model=model,
        split=split,
        device=device,
        seed=cfg.seed,
        batch_size=batch,
        predictions=preds,
        val_predictions=val_preds,
        history=history,
        progress=progress,
        sample_seed=cfg.data.split_seed,
        train_config=cfg.train,
        model_factory=lambda: build_model(cfg.model.name, split.info, cfg.model.args, cfg.model.source),
        shards=shards,
    )

    stage.name = "probes"
    outcome = RunOutcome(run, warnings=[w["message"] for w in warnings])
    for name in probe_order(list(prep.probes)):
        path = run.result_json(name)
        if resuming and path.is_file():
            ctx.results[name] = load_result(path)
            log.info("probe %s: kept saved result", name)
            continue
        log.info("probe %s: running", name)
        seed_everything(cfg.seed)
        release_pages()  # the cached test images the previous steps read leave the resident set
        t0 = time.perf_counter()
        try:
            probe_result = prep.probes[name].run(ctx)
        except Exception as e:  # one broken probe must not lose the others' results
            log.error("probe %s failed: %s", name, e)
            outcome.failed_probes.append(name)
            ctx.results[name] = ProbeResult(
                warnings=[f"probe {name} failed: {type(e).__name__}: {e}"],
                data={"traceback": traceback.format_exc()},
            )
            atomic_write_json(run.failure_file(name), {"error": str(e)})
            continue
        seconds = time.perf_counter() - t0
        save_result(run, name, probe_result, seconds)
        ctx.results[name] = probe_result
        log.info("probe %s: done in %.1f s", name, seconds)

    stage.name = "diagnosis"
    run_diagnosis(run, ctx, outcome.failed_probes)
    stage.name = "checks"
    _checks(cfg, run, outcome)
    stage.name = "report"
    if outcome.failed_probes:
        errors = "; ".join(str(ctx.results[n].warnings[0]) for n in outcome.failed_probes)
        _write_failed(run, "probes", errors)
    from stresslab.runs.report import render

    outcome.metrics = render(run)
    if not outcome.failed_probes:
        atomic_write_text(run.done, "complete\n")
    tracking.finish(run, outcome.metrics)
    return outcome


def _predictions(prep: Prepared, run: RunDir, shards: ShardExecutor) -> tuple[Predictions, Predictions]:
    """Test and validation predictions (in ``shards``), the test ones saved to the run."""
    split, batch, t0 = prep.split, prep.cfg.train.eval_batch_size, time.perf_counter()
    preds, val_preds = (
        Predictions.compute(prep.model, x, y, i, batch_size=batch, device=prep.device, shards=shards)
        for x, y, i in (
            (split.test_x, split.test_y, split.test_index),
            (split.val_x, split.val_y, split.val_index),
        )
    )
    log.info("predictions computed in %.1f s", time.perf_counter() - t0)
    save_predictions(run.predictions, preds, split.info.class_names)
    return preds, val_preds


def _checks(cfg: RunConfig, run: RunDir, outcome: RunOutcome) -> None:
    """Evaluate the config's checks (before the report, which opens with them). A key no
    probe produced is kept as ``checks_error`` for the caller: the run itself is complete."""
    if cfg.checks.empty:
        return
    from stresslab.runs.checks import run_checks

    try:
        outcome.checks = run_checks(run, cfg.checks)
    except StresslabError as e:
        log.error("checks: %s", e)
        outcome.checks_error = str(e)


def _trained_history(
    prep: Prepared, run: RunDir, resuming: bool, progress: ProgressReporter, tracking: Tracking
) -> list[dict[str, float]]:
    """Train (or continue training, or take the given checkpoint); return the history."""
    cfg, model, info = prep.cfg, prep.model, prep.split.info
    if prep.ready:
        return prep.history
    if prep.checkpoint is not None:
        atomic_write_json(run.source_checkpoint, {"path": str(prep.checkpoint.resolve())})
        atomic_write_json(run.history, prep.history)  # the checkpoint's own, so `load` finds it
        return prep.history
    if resuming and run.training.is_file():
        load_weights(model, load_checkpoint(run.final_weights())["state_dict"], run.path)
        # Strict JSON stored NaN (no validation set) as null; the probes expect floats.
        return [{k: float("nan") if v is None else v for k, v in r.items()} for r in read_json(run.history)]
    if cfg.train.epochs == 0:
        if cfg.model.weights:
            log.info(
                "train.epochs is 0: probing %s with the weights in %s", cfg.model.name, cfg.model.weights
            )
        else:
            log.warning("train.epochs is 0 and no --checkpoint: probing an untrained model")
        return []
    state: dict[str, Any] | None = None
    if resuming and run.last_checkpoint.is_file():
        state = load_checkpoint(run.last_checkpoint)
        check_compatible(state, cfg.model.name, info, run.last_checkpoint)
    # Without train.pretrain this is a plain `train`; with it, SimCLR runs first.
    with pretraining(
        model,
        prep.split,
        cfg.train,
        device=prep.device,
        seed=cfg.seed,
        checkpoint_dir=run.checkpoints,
        history_path=run.path / "pretrain_history.json",
        meta=prep.meta,
        progress=progress,
    ):
        result = train(
            model,
            prep.split,
            cfg.train,
            device=prep.device,
            seed=cfg.seed,
            checkpoint_dir=run.checkpoints,
            meta=prep.meta,
            resume=state,
            progress=progress,
            tracker=tracking,
        )
    final = "best.pt" if len(prep.split.val_y) else "last.pt"
    if final == "last.pt" and cfg.train.ema_decay is not None:
        # last.pt holds the raw weights a resume continues from; the run keeps their average.
        final = "final.pt"
        save_checkpoint(run.checkpoints / final, model, {**prep.meta, "epoch": len(result.history)})
    atomic_write_json(run.history, result.history)
    atomic_write_json(
        run.training,
        {
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "precision": result.precision,
            "final_weights": final,
            "warnings": result.warnings,
        },
    )
    return result.history
