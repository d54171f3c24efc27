"""Weight averaging: the update by hand, integer buffers, round trip, and its place in training."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from stresslab.models.weights import load_checkpoint
from stresslab.train.config import AugmentConfig, TrainConfig
from stresslab.train.ema import WeightAverage, ema_decay_at
from stresslab.train.loop import train
from tests.conftest import TinyNet, make_split

CPU = torch.device("cpu")


def test_decay_ramps_up_then_holds() -> None:
    assert ema_decay_at(1, 0.99) == pytest.approx(2 / 11)
    assert ema_decay_at(8, 0.99) == pytest.approx(9 / 18)
    assert ema_decay_at(10_000, 0.99) == 0.99  # (1 + t) / (10 + t) >= 0.99 from t = 890 on
    assert ema_decay_at(889, 0.99) < 0.99
    assert ema_decay_at(890, 0.99) == pytest.approx(0.99)


def test_two_updates_match_a_hand_computation() -> None:
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0.0]]))
        net[1].running_mean.fill_(4.0)
        net[1].num_batches_tracked.fill_(7)
    avg.update(net)  # d_1 = min(0.5, 2/11) = 2/11
    d1 = 2 / 11
    w1 = torch.tensor([[d1 * 1 + (1 - d1) * 3, d1 * 2 + (1 - d1) * 0]])
    assert torch.allclose(avg.shadow["0.weight"], w1)
    assert torch.allclose(avg.shadow["1.running_mean"], torch.tensor([(1 - d1) * 4.0]))
    assert int(avg.shadow["1.num_batches_tracked"]) == 7  # integers are copied, not averaged
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-1.0, 1.0]]))
    avg.update(net)  # d_2 = min(0.5, 3/12) = 0.25
    w2 = 0.25 * w1 + 0.75 * torch.tensor([[-1.0, 1.0]])
    assert torch.allclose(avg.shadow["0.weight"], w2)

    other = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    avg.copy_to(other)
    assert torch.allclose(other[0].weight, w2)
    again = WeightAverage(other, decay=0.5)
    again.load_state_dict(avg.state_dict())
    assert again.updates == 2 and torch.equal(again.shadow["0.weight"], avg.shadow["0.weight"])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage(nn.Linear(2, 1), decay=0.5).load_state_dict(avg.state_dict())


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 2, "batch_size": 16, "lr": 0.01, "augment": AugmentConfig()}
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_training_keeps_and_saves_the_average(tmp_path: Path) -> None:
    # Track the average by hand from the raw weights after every step (read off the
    # optimizer's step through a hook), and compare with what training keeps.
    split = make_split()
    torch.manual_seed(0)
    model = TinyNet(split.info)
    opt_steps: list[dict[str, torch.Tensor]] = []
    handle = register_optimizer_step_post_hook(
        lambda *_: opt_steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    )
    try:
        train(
            model,
            split,
            _cfg(epochs=1, ema_decay=0.9),
            device=torch.device("cpu"),
            seed=0,
            checkpoint_dir=tmp_path,
        )
    finally:
        handle.remove()
    torch.manual_seed(0)
    expected = {k: v.detach().clone() for k, v in TinyNet(split.info).state_dict().items()}
    for t, raw in enumerate(opt_steps, start=1):
        d = ema_decay_at(t, 0.9)
        for k, v in raw.items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v
    last = load_checkpoint(tmp_path / "last.pt")
    for k, v in expected.items():
        assert torch.allclose(last["ema"]["shadow"][k], v, atol=1e-6), k  # the average, saved for resume
        assert torch.equal(last["state_dict"][k], opt_steps[-1][k]), k  # last.pt's weights stay raw
    best = load_checkpoint(tmp_path / "best.pt")  # what the run keeps and probes: the average
    kept = model.state_dict()
    for k in kept:
        assert torch.equal(kept[k], best["state_dict"][k]), k
        assert torch.allclose(kept[k], expected[k], atol=1e-6), k
    assert not torch.equal(kept["head.weight"], opt_steps[-1]["head.weight"])  # not the raw weights
    assert last["ema"]["updates"] == len(opt_steps)


def test_resume_without_a_saved_average_is_refused(tmp_path: Path) -> None:
    from stresslab.errors import CheckpointError

    split = make_split()
    model = TinyNet(split.info)
    train(model, split, _cfg(epochs=1), device=torch.device("cpu"), seed=0, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="ema_decay"):
        train(
            TinyNet(split.info), split, _cfg(ema_decay=0.9), device=torch.device("cpu"), seed=0, resume=state
        )
