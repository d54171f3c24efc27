"""The trainer: it learns, resumes bit-exactly on CPU, and stops cleanly on divergence."""

import math
from pathlib import Path

import pytest
import torch

from stresslab.errors import TrainingDiverged
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint
from stresslab.train.config import AugmentConfig, TrainConfig
from stresslab.train.divergence import loss_explosion
from stresslab.train.loop import lr_factor, train
from tests.conftest import TinyNet, make_split


def _cfg(**kw):  # type: ignore[no-untyped-def]
    base = {
        "epochs": 4,
        "batch_size": 16,
        "lr": 0.01,
        "augment": AugmentConfig(crop_padding=1, hflip=True, rotation_deg=5.0),
    }
    return TrainConfig(**{**base, **kw})


def test_learns_and_records_history(tmp_path: Path) -> None:
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    res = train(
        model,
        split,
        _cfg(epochs=6, augment=AugmentConfig()),
        device=torch.device("cpu"),
        seed=0,
        checkpoint_dir=tmp_path,
    )
    h = res.history
    assert [r["epoch"] for r in h] == list(range(1, 7))
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert max(r["val_acc"] for r in h) > 0.9  # the synthetic task is easy
    assert set(h[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"}
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == res.best_epoch


# The default study's recipe, small: Nesterov SGD with weight decay, the linear one-cycle
# schedule with warmup, label smoothing, weight averaging, on fast_cnn (BatchNorm buffers to restore).
DEFAULT_RECIPE = {
    "optimizer": "sgd",
    "lr": 0.05,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "linear",
    "warmup_epochs": 1.5,
    "label_smoothing": 0.1,
    "ema_decay": 0.9,
}


def _net(name: str, split):  # type: ignore[no-untyped-def]
    if name == "tiny":
        return TinyNet(split.info)
    return build_model("fast_cnn", split.info, {"widths": [4, 8], "convs_per_block": [1, 2]})


@pytest.mark.parametrize(
    ("net", "recipe"),
    [
        ("tiny", {"amp": "off"}),
        ("fast_cnn", {**DEFAULT_RECIPE, "amp": "off"}),
        ("fast_cnn", {**DEFAULT_RECIPE, "amp": "bf16"}),
    ],
    ids=["adam-cosine", "default-recipe", "default-recipe-bf16"],
)
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tmp_path: Path, net: str, recipe: dict[str, object]
) -> None:
    split = make_split()
    dev = torch.device("cpu")
    torch.manual_seed(0)
    full = _net(net, split)
    train(full, split, _cfg(**recipe), device=dev, seed=3, checkpoint_dir=tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_epoch_2(record: dict[str, float]) -> None:
        if record["epoch"] == 2:
            raise Killed

    torch.manual_seed(0)
    part = _net(net, split)
    with pytest.raises(Killed):
        train(
            part,
            split,
            _cfg(**recipe),
            device=dev,
            seed=3,
            checkpoint_dir=tmp_path / "b",
            on_epoch=kill_after_epoch_2,
        )
    # A fresh process builds a new model and resumes from last.pt.
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    torch.manual_seed(123)  # resume must not depend on the global RNG at restart
    resumed = _net(net, split)
    train(resumed, split, _cfg(**recipe), device=dev, seed=3, checkpoint_dir=tmp_path / "b", resume=state)

    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["scheduler"] == b["scheduler"]
    if "ema" in a:  # the weight average resumes too, and so does what the run keeps
        assert a["ema"]["updates"] == b["ema"]["updates"]
        for k, v in a["ema"]["shadow"].items():
            assert torch.equal(v, b["ema"]["shadow"][k]), k
        assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())
    assert [r["lr"] for r in a["history"]] == [r["lr"] for r in b["history"]]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    train(model, split, _cfg(epochs=1), device=torch.device("cpu"), seed=0, checkpoint_dir=tmp_path)
    good = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        model.head.bias.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1/"):
        train(model, split, _cfg(epochs=2), device=torch.device("cpu"), seed=0, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == good


def test_early_stopping_and_schedule() -> None:
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    res = train(
        model,
        split,
        _cfg(epochs=30, lr=1e-9, early_stopping_patience=2, augment=AugmentConfig()),
        device=torch.device("cpu"),
        seed=0,
    )
    assert res.stopped_early and len(res.history) < 30
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(99, 100, 0, "constant") == 1.0


def test_early_stopping_without_validation_counts_a_falling_loss_above_one() -> None:
    # Ten classes: the loss starts near log(10) = 2.3 and stays above 1 while it falls.
    split = make_split(n_val=0, classes=10, size=12)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    res = train(
        model,
        split,
        _cfg(epochs=6, lr=3e-3, early_stopping_patience=2, augment=AugmentConfig()),
        device=torch.device("cpu"),
        seed=0,
    )
    losses = [r["train_loss"] for r in res.history]
    assert min(losses) > 1.0
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)
    assert not res.stopped_early and len(res.history) == 6
    assert res.best_epoch == 6


def test_nan_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path: Path) -> None:
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged) as e:
        train(model, split, _cfg(epochs=2), device=torch.device("cpu"), seed=0, checkpoint_dir=tmp_path)
    assert "epoch 1, step 1/" in str(e.value)
    assert "no checkpoint was written" in str(e.value) and "last good checkpoint" not in str(e.value)
    assert not (tmp_path / "last.pt").exists()


def test_nan_after_an_epoch_names_the_checkpoint_and_its_epoch(tmp_path: Path) -> None:
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)

    def poison(record: dict[str, float]) -> None:
        with torch.no_grad():
            model.head.bias.fill_(float("inf"))

    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1/.*last\.pt holds the weights after epoch 1"):
        train(
            model,
            split,
            _cfg(epochs=3),
            device=torch.device("cpu"),
            seed=0,
            checkpoint_dir=tmp_path,
            on_epoch=poison,
        )
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_a_finite_loss_explosion_is_flagged() -> None:
    # Adam at lr 1e4 throws the weights out without a NaN: the loss explodes and stays finite.
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    res = train(
        model,
        split,
        _cfg(epochs=3, lr=1e4, schedule="constant", augment=AugmentConfig()),
        device=torch.device("cpu"),
        seed=0,
    )
    assert max(r["train_loss"] for r in res.history) > 10 * math.log(3)
    assert len(res.warnings) == 1 and res.warnings[0].startswith("training diverged")


def test_loss_explosion_rules() -> None:
    def h(*losses: float) -> list[dict[str, float]]:
        return [{"epoch": e, "train_loss": v} for e, v in enumerate(losses, start=1)]

    k = 10  # log(10) = 2.303: 10x is 23.03
    assert loss_explosion(h(2.3, 1.0, 0.5, 0.3), k) is None  # ordinary training
    assert loss_explosion(h(2.3, 2.4, 2.2), k) is None  # slow, noisy, never twice the start
    assert loss_explosion(h(23.0), k) is None
    msg = loss_explosion(h(23.1), k)
    assert msg is not None and "epoch 1" in msg and "2.3" in msg
    msg = loss_explosion(h(1.0, 0.4, 2.31), k)  # above log K and 2x the first epoch
    assert msg is not None and "epoch 3" in msg
    assert loss_explosion(h(1.2, 0.4, 2.3), k) is None  # not above log K
    assert loss_explosion(h(float("nan"), 1.0, 1.5), k) is None  # non-finite epochs are skipped
    assert loss_explosion(h(1e15), 1) is None


def test_the_configured_schedule_drives_the_optimizer() -> None:
    # 96 images in batches of 16: 6 steps per epoch, 12 in all, 3 of warmup. After the last
    # step the lr is the factor of step 12: the floor, 0.5 x the peak.
    split = make_split()
    torch.manual_seed(0)
    cfg = _cfg(epochs=2, schedule="linear", warmup_epochs=0.5, final_lr_fraction=0.5, augment=AugmentConfig())
    res = train(TinyNet(split.info), split, cfg, device=torch.device("cpu"), seed=0)
    assert res.history[0]["lr"] == pytest.approx(0.01 * lr_factor(6, 12, 3, "linear", 0.5))
    assert res.history[0]["lr"] == pytest.approx(0.01 * (0.5 + 0.5 * (1 - 3 / 9)))
    assert res.history[1]["lr"] == pytest.approx(0.005)
