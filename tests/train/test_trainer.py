"""The Trainer's loop: hooks in order, early stopping on a known curve, exceptions reach callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import stresslab.train.loop as loop
from stresslab.models.weights import load_checkpoint
from stresslab.train.callbacks import EarlyStopping
from stresslab.train.config import TrainConfig
from stresslab.train.loop import train
from stresslab.train.trainer import Best, Callback, Trainer
from tests.conftest import TinyNet, make_split

CPU = torch.device("cpu")


class Recorder(Callback):
    """Writes down every hook it sees, with the epoch (and step) it came in."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.seen.append("fit_start")

    def on_before_backward(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        self.seen.append(f"before_backward {trainer.epoch}.{step}")

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        self.seen.append(f"batch_end {trainer.epoch}.{step}")

    def on_validation_start(self, trainer: Trainer) -> None:
        self.seen.append(f"validation_start {trainer.epoch}")

    def on_validation_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        assert trainer.history[-1] is record and record["epoch"] == trainer.epoch
        self.seen.append(f"validation_end {trainer.epoch}")

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        checkpoint["recorded"] = len(self.seen)
        self.seen.append(f"save {trainer.epoch}")

    def on_load_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        self.seen.append(f"load {checkpoint['epoch']}")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        self.seen.append(f"epoch_end {trainer.epoch}")

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.seen.append(f"exception {type(exc).__name__}")

    def on_fit_end(self, trainer: Trainer) -> None:
        self.seen.append("fit_end")


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 48, "lr": 0.01, "amp": "off", **kw})


def test_a_recording_callback_sees_the_hooks_in_order(tmp_path: Path) -> None:
    split = make_split()  # 96 training images: 2 steps of 48
    torch.manual_seed(0)
    rec = Recorder()
    train(TinyNet(split.info), split, _cfg(), device=CPU, seed=0, checkpoint_dir=tmp_path, callbacks=[rec])
    epoch = [
        "before_backward {e}.0",
        "batch_end {e}.0",
        "before_backward {e}.1",
        "batch_end {e}.1",
        "validation_start {e}",
        "validation_end {e}",
        "save {e}",
        "epoch_end {e}",
    ]
    expected = ["fit_start"] + [h.format(e=e) for e in (1, 2) for h in epoch] + ["fit_end"]
    assert rec.seen == expected
    # What a callback adds goes into last.pt: the one of epoch 2, after 1 + 8 + 6 hooks.
    assert load_checkpoint(tmp_path / "last.pt")["recorded"] == 15

    # A resume loads the callbacks' state before the first hook of the fit.
    rec2 = Recorder()
    state = load_checkpoint(tmp_path / "last.pt")
    more = _cfg(epochs=3)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    train(model, split, more, device=CPU, seed=0, checkpoint_dir=tmp_path, resume=state, callbacks=[rec2])
    assert rec2.seen[:3] == ["load 2", "fit_start", "before_backward 3.0"]
    assert rec2.seen[-2:] == ["epoch_end 3", "fit_end"]


def test_an_exception_reaches_every_callback_and_propagates() -> None:
    split = make_split()
    rec = Recorder()

    class Stop(Exception):
        pass

    def stop(record: dict[str, float]) -> None:
        raise Stop

    torch.manual_seed(0)
    with pytest.raises(Stop):
        train(TinyNet(split.info), split, _cfg(), device=CPU, seed=0, on_epoch=stop, callbacks=[rec])
    # No checkpoint directory: nothing saved; the built-in on_epoch comes after `rec` at epoch end.
    assert rec.seen[-3:] == ["validation_end 1", "epoch_end 1", "exception Stop"]
    assert "fit_end" not in rec.seen


@pytest.mark.parametrize(
    ("curve", "patience", "stops_after", "best"),
    [
        ([0.5, 0.7, 0.6, 0.65, 0.9], 2, 4, 2),  # epochs 3 and 4 do not beat 0.7
        ([0.5, 0.7, 0.7, 0.7, 0.9], 2, 4, 2),  # a tie is not an improvement
        ([0.5, 0.7, 0.6, 0.8, 0.9], 2, 5, 5),  # one bad epoch at a time: all five run
        ([0.9, 0.5, 0.5, 0.5, 0.5], 3, 4, 1),
    ],
)
def test_early_stopping_stops_at_the_right_epoch_on_a_constructed_curve(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    curve: list[float],
    patience: int,
    stops_after: int,
    best: int,
) -> None:
    accs = iter(curve)
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: (1.0, next(accs)))
    split = make_split(n_train=48)  # one step per epoch
    torch.manual_seed(0)
    model = TinyNet(split.info)
    cfg = _cfg(epochs=len(curve), early_stopping_patience=patience)
    res = train(model, split, cfg, device=CPU, seed=0, checkpoint_dir=tmp_path)
    assert [r["val_acc"] for r in res.history] == curve[:stops_after]
    assert res.stopped_early == (stops_after < len(curve))
    assert res.best_epoch == best
    # The model leaves with the weights of the best epoch, the ones best.pt holds.
    kept = load_checkpoint(tmp_path / "best.pt")
    assert kept["epoch"] == best
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in kept["state_dict"].items())
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["best_epoch"] == best and last["bad_epochs"] == stops_after - best


def test_best_counts_epochs_since_the_best() -> None:
    best = Best()
    seen = [best.update(s, e) for e, s in enumerate([0.2, 0.1, 0.2, 0.3], start=1)]
    assert seen == [True, False, False, True]
    assert (best.score, best.epoch, best.bad_epochs) == (0.3, 4, 0)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)


def test_the_progress_bar_closes_when_training_fails() -> None:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from stresslab.progress import Advance, ProgressReporter

    events: list[str] = []

    class Watched(ProgressReporter):
        @contextmanager
        def __call__(self, description: str, total: int) -> Iterator[Advance]:
            events.append(f"open {description} {total}")
            try:
                yield Advance(None, None)
            finally:
                events.append("closed")

    split = make_split(n_train=48)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    train(model, split, _cfg(), device=CPU, seed=0, progress=Watched(enabled=False))
    assert events == ["open training 2", "closed"]  # 2 epochs of 1 step
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(Exception, match="loss became nan") as failure:
        train(model, split, _cfg(), device=CPU, seed=0, progress=Watched(enabled=False))
    # Closed by the failure itself: its traceback still holds the trainer and its bar.
    assert failure.tb is not None and events[2:] == ["open training 2", "closed"]
