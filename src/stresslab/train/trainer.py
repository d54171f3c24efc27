"""The epoch loop shared by supervised training and SimCLR pretraining, with callbacks.

Each epoch reads top to bottom: train one epoch (``steps_per_epoch`` optimizer steps),
validate (the epoch's record), keep the best weights, checkpoint. What a kind of training
computes lives in a subclass (:class:`stresslab.train.loop.SupervisedTrainer`,
:class:`stresslab.train.pretrain.SimCLRTrainer`); what is carried beside the loop (weight
averaging, divergence checks, early stopping, trackers, the progress bar) lives in
:class:`Callback` objects (:mod:`stresslab.train.callbacks`), called in list order at:

    on_fit_start
      per epoch:  [per step: on_before_backward, on_train_batch_end]
                  on_validation_start, on_validation_end, on_save_checkpoint, on_epoch_end
    on_fit_end (or on_exception when anything raised)

plus ``on_load_checkpoint`` when a run resumes. Callbacks never draw random numbers, so the
numbers a training produces do not depend on which callbacks watch it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from stresslab.train.checkpoint import save_checkpoint


class StepOutput(NamedTuple):
    """One training step's mean ``loss`` (a scalar), its ``logits`` (N, K) and the
    ``labels`` (N,) they are scored against."""

    loss: Tensor
    logits: Tensor
    labels: Tensor


@dataclass
class Best:
    """The best score so far (``-inf`` before any), the epoch that reached it (0: none),
    the epochs since then, and whether the latest epoch improved on it."""

    score: float = -math.inf
    epoch: int = 0
    bad_epochs: int = 0
    improved: bool = False

    def update(self, score: float, epoch: int) -> bool:
        """Count ``score`` of ``epoch`` (higher is better); ``True`` when it beats the best."""
        self.improved = score > self.score
        if self.improved:
            self.score, self.epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        return self.improved


class Callback:
    """Hooks a :class:`Trainer` calls (see the module docstring for when); each does nothing
    unless a subclass overrides it. ``step`` counts from 0 within the epoch."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has been loaded)."""

    def on_before_backward(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        """The step's loss is computed; gradients and weights are not touched yet."""

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        """The optimizer and the schedule have taken the step."""

    def on_validation_start(self, trainer: Trainer) -> None:
        """The epoch's steps are done; the model is about to be validated."""

    def on_validation_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """``record`` (also ``trainer.history[-1]``) is complete and ``trainer.best`` counted it."""

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        """Add to the resumable checkpoint about to be written; a ``state_dict`` key set here
        replaces the model's weights in it."""

    def on_load_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` added (a resume)."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """The epoch is validated and checkpointed; set ``trainer.should_stop`` to end here."""

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Training raised ``exc`` (it propagates after every callback saw it)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """The last epoch is done, before the trainer's own :meth:`Trainer.finish`."""


class Trainer:
    """The epoch loop. Subclasses say what one step computes (:meth:`training_step`,
    :meth:`count`), what an epoch's record holds (:meth:`validate`), which score picks the best
    weights (:meth:`score`) and what a resumable checkpoint holds (:meth:`checkpoint`).

    Args:
        model: trained in place, already on ``device``.
        optimizer, scheduler: stepped once per training step (the schedule counts steps).
        device: where the model and the data are.
        epochs: the last epoch (1-based) to train; ``start_epoch`` > 1 after a resume.
        steps_per_epoch: optimizer steps per epoch.
        callbacks: called in this order at every hook.
        checkpoint_dir: where checkpoints go (``None``: none are written).
        grad_clip: max global L2 norm of the gradients (``None``: no clipping).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        device: torch.device,
        epochs: int,
        steps_per_epoch: int,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: Path | None = None,
        grad_clip: float | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.callbacks = list(callbacks)
        self.checkpoint_dir = checkpoint_dir
        self.grad_clip = grad_clip
        self.start_epoch = 1
        self.epoch = 0  # the epoch in progress (1-based)
        self.epoch_started = 0.0  # time.perf_counter() when it began
        self.history: list[dict[str, float]] = []
        self.best = Best()
        self.best_state: dict[str, Tensor] | None = None  # the weights of best.epoch
        self.saved_epoch: int | None = None  # the epoch of the resumable checkpoint written or resumed
        self.should_stop = False
        self.warnings: list[str] = []

    def fit(self) -> None:
        """Train epochs ``start_epoch`` .. ``epochs`` (fewer when a callback stops it)."""
        self.call("on_fit_start")
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                self.epoch = epoch
                train_seconds = self.train_epoch()
                self.call("on_validation_start")
                record = self.validate(train_seconds)
                self.history.append(record)
                self.keep_best(record)
                self.call("on_validation_end", record)
                self.checkpoint()
                self.call("on_epoch_end", record)
                if self.should_stop:
                    break
        except BaseException as exc:  # KeyboardInterrupt too: callbacks close what they opened
            self.call("on_exception", exc)
            raise
        self.call("on_fit_end")
        self.finish()

    def train_epoch(self) -> float:
        """One pass of ``steps_per_epoch`` optimizer steps; returns its seconds."""
        self.model.train()
        self.epoch_started = time.perf_counter()
        self.begin_epoch()
        for step in range(self.steps_per_epoch):
            out = self.training_step(step)
            self.call("on_before_backward", step, out.loss)
            self.optimizer_step(out.loss)
            self.call("on_train_batch_end", step, out.loss)
            self.count(out)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - self.epoch_started

    def optimizer_step(self, loss: Tensor) -> None:
        """Backpropagate ``loss``, clip the gradients, step the optimizer and the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()

    def keep_best(self, record: dict[str, float]) -> None:
        """Count the epoch's :meth:`score` and keep a copy of the weights when it is the best."""
        score = self.score(record)
        if score is not None and self.best.update(score, self.epoch):
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save_resumable(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """Write ``checkpoint`` to ``path`` (atomically) after the callbacks added their state."""
        self.call("on_save_checkpoint", checkpoint)
        weights = checkpoint.pop("state_dict", None)
        save_checkpoint(path, self.model, checkpoint, state_dict=weights)
        self.saved_epoch = self.epoch

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # What a kind of training fills in.

    def begin_epoch(self) -> None:
        """Draw the epoch's order of the data and zero its running sums."""
        raise NotImplementedError

    def training_step(self, step: int) -> StepOutput:
        """The loss of batch ``step`` of the epoch (a forward pass, no backward)."""
        raise NotImplementedError

    def count(self, out: StepOutput) -> None:
        """Add a finished step to the epoch's running sums."""
        raise NotImplementedError

    def validate(self, train_seconds: float) -> dict[str, float]:
        """The epoch's record (``epoch``, training statistics and any validation metrics)."""
        raise NotImplementedError

    def score(self, record: dict[str, float]) -> float | None:
        """The number whose maximum picks the best epoch; ``None``: no best is kept."""
        return None

    def checkpoint(self) -> None:
        """Write the epoch's checkpoints (nothing by default)."""

    def finish(self) -> None:
        """After the last epoch: the model leaves in the default memory format."""
        self.model.to(memory_format=torch.contiguous_format)
