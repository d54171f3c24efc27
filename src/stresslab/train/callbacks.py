"""What is carried beside the training loop, one :class:`~stresslab.train.trainer.Callback` each:
weight averaging, divergence checks, early stopping, trackers and the progress bar."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Protocol

from torch import Tensor, nn

from stresslab.errors import CheckpointError, TrainingDiverged
from stresslab.progress import Advance, ProgressReporter
from stresslab.train.divergence import loss_explosion
from stresslab.train.ema import WeightAverage
from stresslab.train.trainer import Callback, Trainer

log = logging.getLogger(__name__)


class EpochTracker(Protocol):
    """What a tracker must offer training: take each epoch's record (a run's ``Tracking``)."""

    def on_epoch(self, record: dict[str, float]) -> None: ...


class TrackEpochs(Callback):
    """Hands every epoch's record to ``on_epoch`` (a tracker's, or any function) once the
    epoch is checkpointed; an exception it raises ends training there."""

    def __init__(self, on_epoch: Callable[[dict[str, float]], None]) -> None:
        self.on_epoch = on_epoch

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        self.on_epoch(record)


class WeightAveraging(Callback):
    """An exponential moving average of the weights (:class:`~stresslab.train.ema.WeightAverage`),
    updated after every step. The average is what is validated, kept as the best and left in
    the model at the end; the resumable checkpoint holds the raw weights the optimizer steps,
    plus the average under ``ema``. Put it after callbacks whose ``on_epoch_end`` should see
    the average: there it puts the raw weights back.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.average = WeightAverage(model, decay)
        self.raw: dict[str, Tensor] | None = None

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        self.average.update(trainer.model)

    def on_validation_start(self, trainer: Trainer) -> None:
        self.raw = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        self.average.copy_to(trainer.model)

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.average.state_dict()
        checkpoint["state_dict"] = self.raw

    def on_load_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        if "ema" not in checkpoint:
            raise CheckpointError("the checkpoint to resume has no weight average (train.ema_decay)")
        self.average.load_state_dict(checkpoint["ema"])

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if self.raw is not None:
            trainer.model.load_state_dict(self.raw)
            self.raw = None

    def on_fit_end(self, trainer: Trainer) -> None:
        self.average.copy_to(trainer.model)


class Divergence(Callback):
    """Stops training at a NaN/Inf loss, before it reaches the weights, with the error
    ``explain(trainer, where)`` writes; with ``num_classes``, also warns once (in
    ``trainer.warnings``) when the mean training loss explodes while staying finite
    (:func:`~stresslab.train.divergence.loss_explosion`)."""

    def __init__(self, explain: Callable[[Trainer, str], str], num_classes: int | None = None) -> None:
        self.explain = explain
        self.num_classes = num_classes
        self.warned = False

    def on_before_backward(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        if not loss.isfinite():
            steps = trainer.steps_per_epoch
            where = f"loss became {loss.item()} at epoch {trainer.epoch}, step {step + 1}/{steps}"
            raise TrainingDiverged(self.explain(trainer, where))

    def on_validation_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if self.num_classes is None or self.warned:
            return
        exploded = loss_explosion(trainer.history, self.num_classes)
        if exploded:
            log.warning(exploded)
            trainer.warnings.append(exploded)
            self.warned = True


class EarlyStopping(Callback):
    """Stops after ``patience`` (>= 1) epochs in a row without a better score
    (``trainer.best``, counted before the callbacks see the epoch)."""

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"early stopping patience must be >= 1, got {patience}")
        self.patience = patience

    def on_validation_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if trainer.best.bad_epochs >= self.patience:
            log.info("early stopping at epoch %d (best epoch %d)", trainer.epoch, trainer.best.epoch)
            trainer.should_stop = True


class ProgressBar(Callback):
    """One bar over every remaining step, labelled ``label``; every 20 steps it shows the
    loss, after validation the validation accuracy (when the record has one)."""

    def __init__(self, reporter: ProgressReporter | None, label: str, prefix: str = "") -> None:
        self.reporter = reporter or ProgressReporter(enabled=False)
        self.label = label
        self.prefix = prefix
        self._bar = ExitStack()
        self._advance = Advance(None, None)

    def on_fit_start(self, trainer: Trainer) -> None:
        total = max(0, trainer.epochs - trainer.start_epoch + 1) * trainer.steps_per_epoch
        self._advance = self._bar.enter_context(self.reporter(self.label, total))

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        self._advance(1)
        if step % 20 == 0:
            self._advance.describe(f"{self._epoch(trainer)} loss {loss.item():.3f}")

    def on_validation_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if "val_acc" in record:
            self._advance.describe(f"{self._epoch(trainer)} val acc {record['val_acc']:.4f}")

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._bar.close()

    def _epoch(self, trainer: Trainer) -> str:
        return f"{self.prefix}epoch {trainer.epoch}/{trainer.epochs}"

    def on_fit_end(self, trainer: Trainer) -> None:
        self._bar.close()
