"""Supervised training: a classifier learns from a preloaded split, one epoch at a time.

Data stays a preloaded uint8 tensor on the training device; each step slices a batch,
scales it to [0, 1], augments it on the device (batched) and takes one optimizer step
(the loop itself is :class:`~stresslab.train.trainer.Trainer`'s). Hyperparameters carry
their units: ``lr`` is the peak learning rate per step (reached after ``warmup_epochs``),
``weight_decay`` is the L2 coefficient (decoupled for AdamW), ``grad_clip`` is a max global
L2 norm.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.data.base import Split, to_float
from stresslab.data.indexed import Images
from stresslab.errors import TrainingDiverged
from stresslab.progress import ProgressReporter
from stresslab.train.callbacks import (
    Divergence,
    EarlyStopping,
    EpochTracker,
    ProgressBar,
    TrackEpochs,
    WeightAveraging,
)
from stresslab.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from stresslab.train.config import TrainConfig
from stresslab.train.divergence import non_finite_message
from stresslab.train.precision import use_bf16
from stresslab.train.schedule import lr_factor
from stresslab.train.trainer import Best, Callback, StepOutput, Trainer

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
    x: Images,
    y: Tensor,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
    amp: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 images ``x`` (N, C, H, W; a
    tensor or a view of the image cache, read a batch at a time) in eval mode."""
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
    tracker: EpochTracker | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``model`` in place on ``split.train_*``, validating on ``split.val_*`` each epoch.

    Writes ``checkpoint_dir/last.pt`` (everything resume needs) after every epoch and
    ``best.pt`` when validation accuracy improves; both atomically, never with
    non-finite weights. ``resume`` is a loaded ``last.pt``: training continues after its
    epoch with the same optimizer, schedule and RNG states, so on CPU the final weights
    equal those of an uninterrupted run. ``tracker`` and ``on_epoch`` see every epoch's
    record once it is checkpointed; ``callbacks`` come before the built-in ones at every
    hook. On return the model holds the best-validation weights (the last ones when there
    is no validation set).

    Raises:
        TrainingDiverged: the loss became NaN/Inf (the message names epoch and step).
    """
    trainer = SupervisedTrainer(
        model, split, cfg, device=device, seed=seed, checkpoint_dir=checkpoint_dir, meta=meta
    )
    on_epochs = [f for f in (tracker.on_epoch if tracker is not None else None, on_epoch) if f is not None]
    trainer.callbacks = [
        *callbacks,
        Divergence(_non_finite_error, num_classes=split.info.num_classes),
        *([EarlyStopping(cfg.early_stopping_patience)] if cfg.early_stopping_patience is not None else []),
        *[TrackEpochs(f) for f in on_epochs],
        # Last, so the callbacks before it see the average at the end of an epoch.
        *([WeightAveraging(model, cfg.ema_decay)] if cfg.ema_decay is not None else []),
        ProgressBar(progress, "training"),
    ]
    if resume is not None:
        trainer.resume(resume)
    trainer.fit()
    return TrainResult(
        history=trainer.history,
        best_epoch=trainer.best.epoch,
        stopped_early=trainer.should_stop,
        precision="bfloat16 autocast" if trainer.amp else "float32",
        warnings=trainer.warnings,
    )


def _non_finite_error(trainer: Trainer, where: str) -> str:
    return non_finite_message(where, trainer.checkpoint_dir, trainer.saved_epoch, trainer.best.epoch)


class SupervisedTrainer(Trainer):
    """Cross-entropy training of a classifier on a preloaded split (see :func:`train`).

    Data stays on the device (on the CPU a view of the image cache stays a view, and each
    step copies its batch from it by index); each epoch draws a permutation from a generator seeded with
    ``seed``; augmentation, erasing and mixing draw from one seeded with ``seed + 1``,
    adversarial examples from one seeded with ``seed + 2``. The score that picks the best
    epoch is the validation accuracy, or minus the mean training loss without a validation set.
    """

    def __init__(
        self,
        model: nn.Module,
        split: Split,
        cfg: TrainConfig,
        *,
        device: torch.device,
        seed: int,
        checkpoint_dir: Path | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        from stresslab.data.augment import BatchAugment
        from stresslab.data.erasing import RandomErasing
        from stresslab.data.mixing import BatchMix
        from stresslab.data.photometric import PhotometricAugment

        self.split, self.cfg, self.meta = split, cfg, dict(meta or {})
        self.amp = use_bf16(cfg.amp, device)
        self.channels_last = cfg.channels_last == "on" or cfg.channels_last == "auto"
        self.train_x, self.train_y = split.train_x.to(device), split.train_y.to(device)
        self.n = len(self.train_y)
        if self.n == 0:
            raise TrainingDiverged("the training set is empty")
        steps_per_epoch = math.ceil(self.n / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        a = cfg.augment
        self.augment = BatchAugment(crop_padding=a.crop_padding, hflip=a.hflip, rotation_deg=a.rotation_deg)
        self.photometric = PhotometricAugment(
            a.brightness, a.contrast, a.blur_prob, a.blur_sigma, a.noise_std
        )
        self.erase = RandomErasing(a.erasing_prob, a.erasing_scale, a.erasing_ratio, a.erasing_value)
        self.mix = BatchMix(split.info.num_classes, a.mixup_alpha, a.cutmix_alpha, a.cutmix_prob)
        self.generators = {  # saved for resume
            "shuffle": torch.Generator().manual_seed(seed),
            "augment": torch.Generator(device=device).manual_seed(seed + 1),
            "adversarial": torch.Generator(device=device).manual_seed(seed + 2),
        }
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, cfg.schedule, cfg.final_lr_fraction)
        )
        super().__init__(
            model,
            optimizer,
            scheduler,
            device=device,
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch,
            checkpoint_dir=checkpoint_dir,
            grad_clip=cfg.grad_clip,
        )
        self.has_val = len(split.val_y) > 0
        self.perm = torch.empty(0, dtype=torch.long)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def resume(self, state: dict[str, Any]) -> None:
        """Continue after the epoch of ``state`` (a loaded ``last.pt``)."""
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.call("on_load_checkpoint", state)
        set_rng_states(state["rng"], self.generators, self.device.type == "cuda")
        self.history = list(state["history"])
        self.best = Best(float(state["best_val_acc"]), int(state["best_epoch"]), int(state["bad_epochs"]))
        self.start_epoch = int(state["epoch"]) + 1
        self.saved_epoch = self.start_epoch - 1
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "best.pt").is_file():
            from stresslab.models.weights import load_checkpoint

            self.best_state = load_checkpoint(self.checkpoint_dir / "best.pt")["state_dict"]
        log.info("resuming after epoch %d", self.start_epoch - 1)

    def begin_epoch(self) -> None:
        self.perm = torch.randperm(self.n, generator=self.generators["shuffle"]).to(self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)

    def training_step(self, step: int) -> StepOutput:
        aug_gen, adv = self.generators["augment"], self.cfg.adversarial
        idx = self.perm[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]
        xb, yb = to_float(self.train_x[idx]), self.train_y[idx]
        if self.augment.enabled:
            xb = self.augment(xb, generator=aug_gen)
        if self.photometric.enabled:
            xb = self.photometric(xb, generator=aug_gen)
        if adv is not None:
            xb = _mix_adversarial(self.model, xb, yb, adv, self.generators["adversarial"])
        # Erasing and mixing come last, so adversarial examples see clean labels.
        targets: Tensor = yb
        if self.erase.enabled:
            xb = self.erase(xb, generator=aug_gen)
        if self.mix.enabled:
            xb, targets = self.mix(xb, yb, generator=aug_gen)  # soft targets (N, K)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(xb)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.cfg.label_smoothing)
        return StepOutput(loss, logits, yb)

    def count(self, out: StepOutput) -> None:
        self.loss_sum += out.loss.detach() * len(out.labels)
        self.correct += (out.logits.argmax(1) == out.labels).sum()

    def validate(self, train_seconds: float) -> dict[str, float]:
        cfg, split, device = self.cfg, self.split, self.device
        val_loss, val_acc = evaluate(
            self.model, split.val_x, split.val_y, cfg.eval_batch_size, device, self.channels_last, self.amp
        )
        record = {
            "epoch": self.epoch,
            "train_loss": float(self.loss_sum) / self.n,
            "train_acc": int(self.correct) / self.n,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - self.epoch_started,
            "images_per_s": self.n / train_seconds,
        }
        log.info(
            "epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.0f img/s",
            self.epoch,
            cfg.epochs,
            record["train_loss"],
            record["train_acc"],
            val_loss,
            val_acc,
            record["images_per_s"],
        )
        return record

    def score(self, record: dict[str, float]) -> float:
        return record["val_acc"] if self.has_val else -record["train_loss"]

    def checkpoint(self) -> None:
        """``best.pt`` when the epoch is the best so far, ``last.pt`` always."""
        if self.checkpoint_dir is None:
            return
        rng = rng_states(self.generators, self.device.type == "cuda")
        epoch_meta = {**self.meta, "epoch": self.epoch, "history": self.history}
        if self.best.improved:
            save_checkpoint(self.checkpoint_dir / "best.pt", self.model, epoch_meta)
        resumable = {
            **epoch_meta,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "best_val_acc": self.best.score,
            "best_epoch": self.best.epoch,
            "bad_epochs": self.best.bad_epochs,
        }
        self.save_resumable(self.checkpoint_dir / "last.pt", resumable)

    def finish(self) -> None:
        """The model keeps the best validated weights (after weight averaging: the average)."""
        if self.best_state is not None and self.has_val:
            self.model.load_state_dict(self.best_state)
        super().finish()


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
