"""Training that diverged without a NaN: the loss exploded while staying finite.

A NaN or Inf loss stops training at once (:class:`stresslab.errors.TrainingDiverged`). A
loss that explodes but stays finite (Adam at lr 1e4: a mean loss of 1.6e15, every
prediction one class) trains to the end; this module names it so the report can say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The reference is log(K) nats: the cross-entropy of predicting the uniform distribution,
# which is where an initialized classifier starts and which any model can reach by
# zeroing its head. (With label smoothing the uniform guess still scores exactly log K.)
# A mean epoch loss of EXPLOSION_FACTOR * log(K) means a geometric-mean probability of the
# true class of K**-10: no model that learns passes through that, while a step size that
# throws the weights out gives losses of 1e3 to 1e15.
EXPLOSION_FACTOR = 10.0
# After the first epoch, a mean loss above log(K) (worse than the uniform guess) that is also
# RISE_FACTOR times the first epoch's mean (which itself averages the start at ~log K) says
# training undid what it had learned; ordinary noise and warm-up spikes stay well below.
RISE_FACTOR = 2.0


def loss_explosion(history: Sequence[dict[str, Any]], num_classes: int) -> str | None:
    """A sentence naming the first epoch whose mean training loss exploded, else ``None``.

    ``history`` holds per-epoch records with ``epoch`` and ``train_loss`` (mean
    cross-entropy in nats); non-finite or missing losses are skipped. An epoch is flagged
    when its mean loss exceeds ``EXPLOSION_FACTOR * log(K)``, or (after the first epoch)
    exceeds both ``log(K)`` and ``RISE_FACTOR`` times the first epoch's mean loss.
    """
    if num_classes < 2:
        return None
    uniform = math.log(num_classes)
    first: float | None = None
    for rec in history:
        loss = rec.get("train_loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            continue
        epoch = rec.get("epoch", "?")
        if loss > EXPLOSION_FACTOR * uniform:
            return (
                f"training diverged: the mean training loss of epoch {epoch} is {loss:.3g}, more than "
                f"{EXPLOSION_FACTOR:g}x log({num_classes}) = {uniform:.3g}, the loss of a uniform guess. "
                "Every number below describes a broken model; lower train.lr or set train.grad_clip."
            )
        if first is not None and loss > uniform and loss > RISE_FACTOR * first:
            return (
                f"training diverged: the mean training loss rose from {first:.3g} in the first epoch to "
                f"{loss:.3g} in epoch {epoch}, above log({num_classes}) = {uniform:.3g}, the loss of a "
                "uniform guess. Lower train.lr or set train.grad_clip."
            )
        if first is None:
            first = float(loss)
    return None


def non_finite_message(
    where: str, checkpoint_dir: Path | None, saved_epoch: int | None, best_epoch: int
) -> str:
    """The error for a NaN/Inf loss: ``where`` it happened and which checkpoints hold what.

    ``saved_epoch`` is the last epoch whose ``last.pt`` this training wrote (or resumed
    from), ``None`` when it wrote none yet; ``best_epoch`` the epoch in ``best.pt`` (0: none).
    """
    if checkpoint_dir is None:
        kept = "no checkpoints are written by this training"
    elif saved_epoch is None:
        kept = f"no checkpoint was written: {checkpoint_dir} holds none from this training"
    else:
        kept = f"{checkpoint_dir / 'last.pt'} holds the weights after epoch {saved_epoch}"
        if best_epoch:
            kept += f", best.pt those of epoch {best_epoch}"
    return f"{where}; {kept}. Try a lower lr or grad_clip."
