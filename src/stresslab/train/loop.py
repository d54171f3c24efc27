"""The training loop, top to bottom.

Data stays a preloaded uint8 tensor on the training device; each step slices a batch,
scales it to [0, 1], augments it on the device (batched) and takes one optimizer step.
Hyperparameters carry their units: ``lr`` is the peak learning rate per step (reached
after ``warmup_epochs``), ``weight_decay`` is the L2 coefficient (decoupled for AdamW),
``grad_clip`` is a max global L2 norm.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.data.base import Split, to_float
from stresslab.errors import CheckpointError, TrainingDiverged
from stresslab.progress import ProgressReporter
from stresslab.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from stresslab.train.config import TrainConfig
from stresslab.train.divergence import loss_explosion, non_finite_message
from stresslab.train.ema import WeightAverage
from stresslab.train.precision import use_bf16
from stresslab.train.schedule import lr_factor

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Per-epoch history (list of dicts), where the best validation accuracy was, the
    arithmetic training ran in (``float32`` or ``bfloat16 autocast``), and warnings about the
    training itself (a loss that exploded without becoming NaN)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    precision: str = "float32"
    warnings: list[str] = field(default_factory=list)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
    amp: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 images ``x`` (eval mode)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for i in range(0, len(y), batch_size):
            xb = to_float(x[i : i + batch_size].to(device, non_blocking=True))
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y[i : i + batch_size].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)
            loss_sum += float(F.cross_entropy(logits.float(), yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return loss_sum / len(y), correct / len(y)


def train(
    model: nn.Module,
    split: Split,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path | None = None,
    meta: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    progress: ProgressReporter | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``split.train_*``, validating on ``split.val_*`` each epoch.

    Writes ``checkpoint_dir/last.pt`` (everything resume needs) after every epoch and
    ``best.pt`` when validation accuracy improves; both atomically, never with
    non-finite weights. ``resume`` is a loaded ``last.pt``: training continues after its
    epoch with the same optimizer, schedule and RNG states, so on CPU the final weights
    equal those of an uninterrupted run. On return the model holds the best-validation
    weights (the last ones when there is no validation set).

    Raises:
        TrainingDiverged: the loss became NaN/Inf (the message names epoch and step).
    """
    from stresslab.data.augment import BatchAugment
    from stresslab.data.erasing import RandomErasing
    from stresslab.data.mixing import BatchMix

    meta = dict(meta or {})
    progress = progress or ProgressReporter(enabled=False)
    use_cuda = device.type == "cuda"
    amp = use_bf16(cfg.amp, device)
    channels_last = cfg.channels_last == "on" or cfg.channels_last == "auto"

    # Data: preloaded on the device, shuffled by a seeded generator each epoch.
    train_x, train_y = split.train_x.to(device), split.train_y.to(device)
    n = len(train_y)
    if n == 0:
        raise TrainingDiverged("the training set is empty")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    shuffle_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    augment = BatchAugment(
        crop_padding=cfg.augment.crop_padding, hflip=cfg.augment.hflip, rotation_deg=cfg.augment.rotation_deg
    )
    a = cfg.augment
    erase = RandomErasing(a.erasing_prob, a.erasing_scale, a.erasing_ratio, a.erasing_value)
    mix = BatchMix(split.info.num_classes, a.mixup_alpha, a.cutmix_alpha, a.cutmix_prob)
    adv = cfg.adversarial
    adv_gen = torch.Generator(device=device).manual_seed(seed + 2)
    generators = {"shuffle": shuffle_gen, "augment": aug_gen, "adversarial": adv_gen}  # saved for resume

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, cfg.schedule, cfg.final_lr_fraction)
    )

    result = TrainResult(precision="bfloat16 autocast" if amp else "float32")
    # The score to beat starts below any score: validation accuracy, or minus the mean
    # training loss when there is no validation set (which can be any negative number).
    best_acc, bad_epochs, start_epoch = -math.inf, 0, 1
    best_state: dict[str, Tensor] | None = None
    saved_epoch: int | None = None  # the epoch in checkpoint_dir/last.pt written (or resumed) here
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if ema is not None:
            if "ema" not in resume:
                raise CheckpointError("the checkpoint to resume has no weight average (train.ema_decay)")
            ema.load_state_dict(resume["ema"])
        set_rng_states(resume["rng"], generators, use_cuda)
        result.history = list(resume["history"])
        best_acc, bad_epochs = float(resume["best_val_acc"]), int(resume["bad_epochs"])
        result.best_epoch = int(resume["best_epoch"])
        start_epoch = int(resume["epoch"]) + 1
        saved_epoch = start_epoch - 1
        if checkpoint_dir is not None and (checkpoint_dir / "best.pt").is_file():
            from stresslab.models.weights import load_checkpoint

            best_state = load_checkpoint(checkpoint_dir / "best.pt")["state_dict"]
        log.info("resuming after epoch %d", start_epoch - 1)

    has_val = len(split.val_y) > 0
    with progress("training", max(0, cfg.epochs - start_epoch + 1) * steps_per_epoch) as advance:
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for step in range(steps_per_epoch):
                idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                xb, yb = to_float(train_x[idx]), train_y[idx]
                if augment.enabled:
                    xb = augment(xb, generator=aug_gen)
                if adv is not None:
                    xb = _mix_adversarial(model, xb, yb, adv, adv_gen)
                # Erasing and mixing come last, so adversarial examples see clean labels.
                targets: Tensor = yb
                if erase.enabled:
                    xb = erase(xb, generator=aug_gen)
                if mix.enabled:
                    xb, targets = mix(xb, yb, generator=aug_gen)  # soft targets (N, K)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
                if not torch.isfinite(loss):
                    where = f"loss became {loss.item()} at epoch {epoch}, step {step + 1}/{steps_per_epoch}"
                    raise TrainingDiverged(
                        non_finite_message(where, checkpoint_dir, saved_epoch, result.best_epoch)
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
                advance(1)
                if step % 20 == 0:
                    advance.describe(f"epoch {epoch}/{cfg.epochs} loss {loss.item():.3f}")
            if use_cuda:
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - t0
            # With weight averaging, the average is what is validated, kept and probed.
            raw_state = None
            if ema is not None:
                raw_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                ema.copy_to(model)
            val_loss, val_acc = evaluate(
                model, split.val_x, split.val_y, cfg.eval_batch_size, device, channels_last, amp
            )
            record = {
                "epoch": epoch,
                "train_loss": float(loss_sum) / n,
                "train_acc": int(correct) / n,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "images_per_s": n / train_seconds,
            }
            result.history.append(record)
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.0f img/s",
                epoch,
                cfg.epochs,
                record["train_loss"],
                record["train_acc"],
                val_loss,
                val_acc,
                record["images_per_s"],
            )
            advance.describe(f"epoch {epoch}/{cfg.epochs} val acc {val_acc:.4f}")
            exploded = loss_explosion(result.history, split.info.num_classes)
            if exploded and not result.warnings:
                log.warning(exploded)
                result.warnings.append(exploded)

            score = val_acc if has_val else -record["train_loss"]
            improved = score > best_acc
            if improved:
                best_acc, bad_epochs, result.best_epoch = score, 0, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if checkpoint_dir is not None:
                rng = rng_states(generators, use_cuda)
                if improved:
                    save_checkpoint(
                        checkpoint_dir / "best.pt", model, {**meta, "epoch": epoch, "history": result.history}
                    )
                save_checkpoint(
                    checkpoint_dir / "last.pt",
                    model,
                    {
                        **meta,
                        **({"ema": ema.state_dict()} if ema is not None else {}),
                        "epoch": epoch,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng,
                        "history": result.history,
                        "best_val_acc": best_acc,
                        "best_epoch": result.best_epoch,
                        "bad_epochs": bad_epochs,
                    },
                    state_dict=raw_state,
                )
                saved_epoch = epoch
            if on_epoch is not None:
                on_epoch(record)
            if raw_state is not None:
                model.load_state_dict(raw_state)
            if cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience:
                log.info("early stopping at epoch %d (best epoch %d)", epoch, result.best_epoch)
                result.stopped_early = True
                break

    if best_state is not None and has_val:
        model.load_state_dict(best_state)
    elif ema is not None:
        ema.copy_to(model)
    model.to(memory_format=torch.contiguous_format)
    return result


def _mix_adversarial(model: nn.Module, x: Tensor, y: Tensor, adv: Any, gen: torch.Generator) -> Tensor:
    """Replace the first ``adv.fraction`` of the batch by adversarial examples."""
    from stresslab.train.adversarial import adversarial_examples

    k = max(1, round(adv.fraction * len(y)))
    x_adv = adversarial_examples(
        model,
        x[:k],
        y[:k],
        method=adv.method,
        epsilon=adv.epsilon,
        steps=adv.steps,
        step_size=adv.step_size,
        generator=gen,
    )
    return torch.cat([x_adv, x[k:]]) if k < len(y) else x_adv
