"""Learning-rate schedules against values worked out by hand."""

import math

import pytest
import torch

from stresslab.train.schedule import lr_factor


def test_linear_schedule_by_hand() -> None:
    # 10 steps, 2 of warmup: 0.5, 1.0, then 1 - t with t = (step - 2) / 8.
    got = [lr_factor(s, 10, 2, "linear") for s in range(10)]
    want = [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert got == pytest.approx(want)
    # Tending to a floor of 0.2: 0.2 + 0.8 * (1 - t).
    assert lr_factor(6, 10, 2, "linear", 0.2) == pytest.approx(0.2 + 0.8 * 0.5)
    assert lr_factor(10, 10, 2, "linear", 0.2) == pytest.approx(0.2)  # past the end: the floor
    assert lr_factor(3, 4, 0, "linear") == pytest.approx(0.25)


def test_cosine_and_constant_by_hand() -> None:
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(40, 100, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 3)))
    assert lr_factor(55, 100, 10, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(99, 100, 0, "constant") == 1.0
    assert lr_factor(3, 100, 10, "constant") == pytest.approx(0.4)
    assert lr_factor(7, 5, 5, "linear") == 1.0  # no steps after warmup: stay at the peak


def test_lambda_lr_follows_the_factor() -> None:
    # The trainer drives LambdaLR with lr_factor: the lr of the k-th step is peak * factor(k).
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 8, 2, "linear"))
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.4 * f for f in (0.5, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)])


def test_bad_schedule_settings_are_named() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        lr_factor(0, 10, 0, "step")
    with pytest.raises(ValueError, match="final_fraction"):
        lr_factor(0, 10, 0, "linear", 1.5)
