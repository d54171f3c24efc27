"""The Square attack: its schedules and blocks against torchattacks' port of the authors' code,
robust accuracy against torchattacks on a tiny model, and a model whose input gradient is zero."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.attacks import ATTACKS, PGD, Square, perturbation_norms
from stresslab.attacks.square import _eta, _rectangle, p_schedule
from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.scoped import inference_scope
from tests.conftest import TinyNet, make_split


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Random search is many tiny forward passes: a second thread only adds overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_p_schedule_by_hand_and_against_torchattacks() -> None:
    assert p_schedule(0.8, 0, 1000) == 0.8 and p_schedule(0.8, 1, 1000) == 0.8
    assert p_schedule(0.8, 2, 1000) == 0.4  # iteration 20 of 10,000: halved once
    assert p_schedule(0.8, 100, 1000) == 0.8 / 16  # 1,000 of 10,000: halved four times
    assert p_schedule(0.8, 999, 1000) == 0.8 / 512
    torchattacks = pytest.importorskip("torchattacks")
    for n in (100, 1000, 5000):
        ref = torchattacks.Square(nn.Identity(), n_queries=n, p_init=0.3)
        assert all(p_schedule(0.3, i, n) == ref.p_selection(i) for i in range(n))


def test_l2_blocks_against_torchattacks() -> None:
    torchattacks = pytest.importorskip("torchattacks")
    ref = torchattacks.Square(nn.Identity(), norm="L2")
    ref.device = torch.device("cpu")
    for a, b in [(1, 1), (2, 5), (3, 5), (4, 7), (6, 6)]:
        torch.testing.assert_close(_rectangle(a, b), ref.eta_rectangles(a, b))
    for s in (3, 5, 7):
        ours = _eta(s, torch.Generator().manual_seed(0))
        theirs = ref.eta(s)
        assert torch.allclose(ours, theirs) or torch.allclose(ours, theirs.T)
        assert float(ours.norm()) == pytest.approx(1.0)


@functools.cache
def _color_model() -> tuple[TinyNet, torch.Tensor, torch.Tensor]:
    split = make_split(n_train=192, n_test=192, channels=3, size=8, seed=1)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = split.train_x.float() / 255, split.train_y
    for _ in range(80):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), split.test_x.float() / 255, split.test_y


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 3.0)])
def test_robust_accuracy_matches_torchattacks(norm: str, eps: float) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = _color_model()
    queries, seeds = 100, range(3)
    ours, theirs = [], []
    for seed in seeds:
        attack = Square(norm=norm, n_queries=queries)
        out = attack.run(model, x, y, eps, generator=torch.Generator().manual_seed(seed))
        assert perturbation_norms(out.images - x, norm).max() <= eps + 1e-5  # type: ignore[arg-type]
        ours.append(float((out.logits.argmax(1) == y).float().mean()))
        ref = torchattacks.Square(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, n_queries=queries)
        ref.seed = seed
        with torch.no_grad():
            theirs.append(float((model(ref(x, y)).argmax(1) == y).float().mean()))
    mean_ours, mean_theirs = sum(ours) / len(ours), sum(theirs) / len(theirs)
    # Both are random searches; the attack does something here and agrees with the reference.
    assert mean_ours < 0.9 and mean_theirs < 0.9
    assert abs(mean_ours - mean_theirs) <= 0.1, (ours, theirs)


class Rounding(Classifier):
    """Rounds its input to quarters before a linear head: the input gradient is zero everywhere."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.head = nn.Linear(info.channels * info.height * info.width, info.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4).flatten(1) / 4


def rounding_model() -> tuple[Rounding, torch.Tensor, torch.Tensor]:
    """A :class:`Rounding` model trained on the synthetic squares (the head learns through
    the rounded features), with test images and labels."""
    split = make_split(n_train=96, n_test=48, classes=3, seed=3)
    torch.manual_seed(0)
    model = Rounding(split.info)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = split.train_x.float() / 255, split.train_y
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), split.test_x.float() / 255, split.test_y


def test_square_fools_a_model_with_zero_input_gradients() -> None:
    model, x, y = rounding_model()
    eps = 0.25
    with inference_scope(model):
        clean = model(x).argmax(1) == y
        pgd = PGD(steps=10).run(model, x, y, eps, generator=torch.Generator().manual_seed(0))
        square = Square(n_queries=300).run(model, x, y, eps, generator=torch.Generator().manual_seed(0))
    assert float(clean.float().mean()) > 0.9
    # PGD cannot move: the gradient is zero, so its only change is the random start.
    pgd_acc = float((pgd.logits.argmax(1) == y).float().mean())
    square_acc = float((square.logits.argmax(1) == y).float().mean())
    assert square_acc < pgd_acc - 0.3, (square_acc, pgd_acc)
    assert perturbation_norms(square.images - x, "linf").max() <= eps + 1e-6


def test_square_is_seeded_leaves_the_model_alone_and_checks_settings() -> None:
    model, x, y = _color_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = Square(n_queries=20).run(model, x[:16], y[:16], 0.2, generator=torch.Generator().manual_seed(4))
    b = Square(n_queries=20).run(model, x[:16], y[:16], 0.2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.images, b.images)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.eval()
    # Images smaller than the L2 start's 5x5 grid of blocks.
    tiny = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    flat = nn.Sequential(nn.Flatten(), nn.Linear(32, 3))
    out = Square(norm="l2", n_queries=20).run(flat, tiny, torch.tensor([0, 1, 2]), 0.5)
    assert perturbation_norms(out.images - tiny, "l2").max() <= 0.5 + 1e-5
    assert bool(torch.isfinite(out.images).all()) and out.images.min() >= 0 and out.images.max() <= 1
    zero = Square().run(model, x[:4], y[:4], 0.0)
    assert torch.equal(zero.images, x[:4])
    assert not Square.uses_gradients and Square.iterative and Square.convergence_settings == ("n_queries",)
    built = ATTACKS.get("square_l2")(n_queries=50, p_init=0.1)
    assert isinstance(built, Square) and built.norm == "l2"
    assert built.settings() == {"loss": "margin", "n_queries": 50, "p_init": 0.1, "restarts": 1}
    for bad in ({"n_queries": 0}, {"p_init": 0.0}, {"restarts": 0}):
        with pytest.raises(ConfigError):
            Square(**bad)  # type: ignore[arg-type]
