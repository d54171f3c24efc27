"""One run, start to end: config -> data -> model -> train -> predictions -> probes -> report."""

from __future__ import annotations

import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stresslab import config as config_mod
from stresslab.config import RunConfig
from stresslab.data import load_split
from stresslab.data.base import Split
from stresslab.errors import CheckpointError, StresslabError
from stresslab.models import build_model
from stresslab.probes import PROBES, build_probe
from stresslab.probes.base import ProbeContext, ProbeResult
from stresslab.probes.predictions import Predictions
from stresslab.probes.storage import load_result, save_result
from stresslab.progress import ProgressReporter
from stresslab.rundir import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    default_run_path,
    environment,
    read_json,
)
from stresslab.train.checkpoint import check_compatible, load_checkpoint, load_weights
from stresslab.train.loop import pick_device, train

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """Where the run went and which probes failed (their errors are in the report)."""

    run_dir: RunDir
    metrics: dict[str, float] = field(default_factory=dict)
    failed_probes: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def probe_order(names: list[str]) -> list[str]:
    """Configured probes with each one's configured requirements first (stable otherwise)."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise StresslabError(f"probe requirements form a cycle: {' -> '.join((*stack, name))}")
        for req in PROBES.get(name).requires:
            if req in names:
                visit(req, (*stack, name))
        order.append(name)

    for n in names:
        visit(n, ())
    return order


def load_data(cfg: RunConfig) -> Split:
    d = cfg.data
    return load_split(
        d.dataset,
        root=d.root,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        train_subset=d.train_subset,
        test_subset=d.test_subset,
        image_size=d.image_size,
        channels=d.channels,
        skip_bad=d.skip_bad,
        download=d.download,
    )


def model_meta(cfg: RunConfig, split: Split) -> dict[str, Any]:
    """What a checkpoint records so it can be loaded and checked without the config."""
    info = split.info
    return {
        "model": {"name": cfg.model.name, "args": cfg.model.args, "source": cfg.model.source},
        "class_names": list(info.class_names),
        "channels": info.channels,
        "image_size": [info.height, info.width],
        "config": config_mod.to_dict(cfg),
    }


def execute(
    cfg: RunConfig,
    *,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    show_progress: bool = True,
) -> RunOutcome:
    """Run ``cfg`` end to end and write the run directory (see :class:`RunDir`).

    With ``resume``, ``cfg`` is read from that run directory, training continues from
    its last complete checkpoint and probes with saved results are not run again.
    """
    if resume is not None:
        run = RunDir.open(resume)
        cfg = config_mod.resolve(run.config)
    else:
        run = RunDir.create(out or default_run_path(config_mod.run_name(cfg)))
    with run.lock():
        return _execute(cfg, run, checkpoint, resume is not None, show_progress)


def _execute(
    cfg: RunConfig, run: RunDir, checkpoint: str | Path | None, resuming: bool, show_progress: bool
) -> RunOutcome:
    # Unknown probes and settings fail here, before any work.
    probes = {name: build_probe(name, settings) for name, settings in cfg.probes.items()}
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    if not resuming:
        atomic_write_text(run.config, config_mod.dump_yaml(cfg))
        atomic_write_json(run.env, environment(device, cfg.seed))
    progress = ProgressReporter(enabled=show_progress)

    log.info("loading data: %s", cfg.data.dataset)
    split = load_data(cfg)
    info = split.info
    log.info(
        "%s: %d train, %d validation, %d test images, %d classes, %dx%dx%d",
        info.name,
        len(split.train_y),
        len(split.val_y),
        len(split.test_y),
        info.num_classes,
        info.channels,
        info.height,
        info.width,
    )
    model = build_model(cfg.model.name, info, cfg.model.args, cfg.model.source)
    meta = model_meta(cfg, split)

    history: list[dict[str, float]] = []
    training_record = run.path / "training.json"
    source_record = run.path / "source_checkpoint.json"
    if resuming and checkpoint is None and source_record.is_file():
        checkpoint = read_json(source_record)["path"]  # a probe-only run keeps probing its model
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        check_compatible(ckpt, cfg.model.name, info, checkpoint)
        load_weights(model, ckpt["state_dict"], checkpoint)
        history = list(ckpt.get("history", []))
        atomic_write_json(source_record, {"path": str(Path(checkpoint).resolve())})
    elif resuming and training_record.is_file():
        load_weights(model, load_checkpoint(_final_weights(run))["state_dict"], run.path)
        # Strict JSON stored NaN (no validation set) as null; the probes expect floats.
        history = [
            {k: float("nan") if v is None else v for k, v in r.items()} for r in read_json(run.history)
        ]
    elif cfg.train.epochs > 0:
        state = None
        if resuming and run.last_checkpoint.is_file():
            state = load_checkpoint(run.last_checkpoint)
            check_compatible(state, cfg.model.name, info, run.last_checkpoint)
        result = train(
            model,
            split,
            cfg.train,
            device=device,
            seed=cfg.seed,
            checkpoint_dir=run.checkpoints,
            meta=meta,
            resume=state,
            progress=progress,
        )
        history = result.history
        atomic_write_json(run.history, history)
        atomic_write_json(
            training_record,
            {
                "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early,
                "final_weights": "best.pt" if len(split.val_y) else "last.pt",
            },
        )
    else:
        log.warning("train.epochs is 0 and no --checkpoint: probing an untrained model")
    model.to(device).eval()

    t0 = time.perf_counter()
    preds = Predictions.compute(
        model,
        split.test_x,
        split.test_y,
        split.test_index,
        batch_size=cfg.train.eval_batch_size,
        device=device,
    )
    val_preds = Predictions.compute(
        model, split.val_x, split.val_y, split.val_index, batch_size=cfg.train.eval_batch_size, device=device
    )
    log.info("predictions computed in %.1f s", time.perf_counter() - t0)
    ctx = ProbeContext(
        model=model,
        split=split,
        device=device,
        seed=cfg.seed,
        batch_size=cfg.train.eval_batch_size,
        predictions=preds,
        val_predictions=val_preds,
        history=history,
        progress=progress,
        sample_seed=cfg.data.split_seed,
        train_config=cfg.train,
        model_factory=lambda: build_model(cfg.model.name, info, cfg.model.args, cfg.model.source),
    )

    outcome = RunOutcome(run)
    for name in probe_order(list(probes)):
        path = run.result_json(name)
        if resuming and path.is_file():
            ctx.results[name] = load_result(path)
            log.info("probe %s: kept saved result", name)
            continue
        log.info("probe %s: running", name)
        seed_everything(cfg.seed)
        t0 = time.perf_counter()
        try:
            probe_result = probes[name].run(ctx)
        except Exception as e:  # one broken probe must not lose the others' results
            log.error("probe %s failed: %s", name, e)
            outcome.failed_probes.append(name)
            probe_result = ProbeResult(
                warnings=[f"probe {name} failed: {type(e).__name__}: {e}"],
                data={"traceback": traceback.format_exc()},
            )
            atomic_write_json(run.results / f"{name}.failed.json", {"error": str(e)})
            ctx.results[name] = probe_result
            continue
        seconds = time.perf_counter() - t0
        save_result(run, name, probe_result, seconds)
        ctx.results[name] = probe_result
        log.info("probe %s: done in %.1f s", name, seconds)

    from stresslab.report.render import render

    outcome.metrics = render(run)
    if not outcome.failed_probes:
        atomic_write_text(run.done, "complete\n")
    return outcome


def _final_weights(run: RunDir) -> Path:
    rec = read_json(run.path / "training.json")
    path = run.checkpoints / str(rec.get("final_weights", "best.pt"))
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the run cannot be resumed")
    return path
