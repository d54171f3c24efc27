"""Attacks and adversarial-training examples against known answers on tiny models."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.attacks import ATTACKS, FGSM, MIFGSM, PGD, perturbation_norms, pgd_perturb
from stresslab.attacks.base import attack_loss, project, random_start, steepest_ascent
from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope
from stresslab.train.adversarial import adversarial_examples
from tests.conftest import TinyNet, make_split


class TwoClassLinear(nn.Module):
    """Logits ``(0, w.x + b)``: class 1 wins when ``w.x + b > 0``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def _linear_case() -> tuple[TwoClassLinear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    model = TwoClassLinear(w, b=0.1)
    # Pixels in [0.2, 0.8]: a step of 0.1 never reaches the box, so the optimum is unclipped.
    x = 0.2 + 0.6 * torch.rand(6, 1, 4, 4, generator=g)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    return model, x, y


@pytest.mark.parametrize("attack", [FGSM(norm="linf"), PGD(norm="linf", steps=5, early_stop=False)])
def test_linf_attack_reaches_the_linear_worst_case(attack: FGSM | PGD) -> None:
    model, x, y = _linear_case()
    eps = 0.1
    adv = attack.perturb(model, x, y, eps, generator=torch.Generator().manual_seed(1))
    # Label 1 wants w.x large, so the worst case subtracts eps*sign(w); label 0 adds it.
    direction = torch.where(y == 1, -1.0, 1.0).view(-1, 1, 1, 1)
    expected = x + direction * eps * model.w.detach().sign().view(1, 1, 4, 4)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    # The score moves by exactly eps * ||w||_1, the L-inf worst case of a linear function.
    score = lambda t: t.flatten(1) @ model.w.detach()  # noqa: E731
    shift = (score(adv) - score(x)) * torch.where(y == 1, -1.0, 1.0)
    torch.testing.assert_close(
        shift, torch.full((6,), eps * float(model.w.detach().abs().sum())), atol=1e-5, rtol=0
    )


def test_l2_attacks_reach_the_linear_worst_case() -> None:
    model, x, y = _linear_case()
    eps = 0.3
    unit = (model.w.detach() / model.w.detach().norm()).view(1, 1, 4, 4)
    direction = torch.where(y == 1, -1.0, 1.0).view(-1, 1, 1, 1)
    expected = x + direction * eps * unit
    fgm = FGSM(norm="l2").perturb(model, x, y, eps)
    pgd = PGD(norm="l2", steps=5, random_start=False, early_stop=False).perturb(model, x, y, eps)
    torch.testing.assert_close(fgm, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(pgd, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_adversarial_images_stay_within_epsilon_and_the_box(name: str) -> None:
    split = make_split(n_test=40)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    x = split.test_x.float() / 255
    x[:5] = 1.0  # saturated images: the box constraint binds
    x[5:10] = 0.0
    # A score-based attack spends its whole query budget on images it cannot fool; 100
    # queries are enough to check the bounds.
    attack = ATTACKS.get(name)(
        **({"n_queries": 100} if "n_queries" in ATTACKS.get(name).setting_names() else {})
    )
    norm = attack.norm
    for eps in (0.0, 0.03, 0.5):
        with inference_scope(model):
            out = attack.run(model, x, split.test_y, eps, generator=torch.Generator().manual_seed(0))
        assert out.images.min() >= 0.0 and out.images.max() <= 1.0
        assert perturbation_norms(out.images - x, norm).max() <= eps + 1e-5
        torch.testing.assert_close(out.logits, model(out.images).detach(), atol=1e-5, rtol=1e-5)
        if eps == 0.0:
            assert torch.equal(out.images, x)


def test_projection_random_start_and_directions() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(8, 3, 5, 5, generator=g)
    assert project(d, 0.2, "linf").abs().max() <= 0.2
    torch.testing.assert_close(perturbation_norms(project(d, 0.5, "l2"), "l2"), torch.full((8,), 0.5))
    small = d * 1e-3
    torch.testing.assert_close(project(small, 0.5, "l2"), small)  # inside the ball: unchanged
    x = torch.rand(8, 3, 5, 5, generator=g)
    for norm in ("linf", "l2"):
        r = random_start(x, 0.1, norm, torch.Generator().manual_seed(3))  # type: ignore[arg-type]
        assert perturbation_norms(r, norm).max() <= 0.1 + 1e-6  # type: ignore[arg-type]
        assert ((x + r) >= 0).all() and ((x + r) <= 1).all()
        assert torch.equal(r, random_start(x, 0.1, norm, torch.Generator().manual_seed(3)))  # type: ignore[arg-type]
    zero = torch.zeros(2, 1, 3, 3)
    assert torch.equal(steepest_ascent(zero, "l2"), zero)  # no NaN from a zero gradient
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    torch.testing.assert_close(attack_loss(logits, labels, "margin"), torch.tensor([-1.5, 2.0]))
    torch.testing.assert_close(
        attack_loss(logits, labels, "ce"), F.cross_entropy(logits, labels, reduction="none")
    )


def _trained_tiny() -> tuple[TinyNet, torch.Tensor, torch.Tensor]:
    """A fresh copy of one trained tiny model (trained once per test session)."""
    model, x, y = _train_tiny()
    return copy.deepcopy(model), x, y


@functools.cache
def _train_tiny() -> tuple[TinyNet, torch.Tensor, torch.Tensor]:
    split = make_split(n_train=192, n_test=96, seed=1)
    torch.manual_seed(0)
    model = TinyNet(split.info)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = split.train_x.float() / 255, split.train_y
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, split.test_x.float() / 255, split.test_y


def test_pgd_never_worse_than_fgsm_on_a_trained_model() -> None:
    model, x, y = _trained_tiny()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9  # trained: the comparison means something
    epsilons = [0.0, 0.02, 0.05, 0.1, 0.2]
    with inference_scope(model):
        fgsm = FGSM().sweep(model, x, y, epsilons)
        pgd = PGD(steps=10).sweep(model, x, y, epsilons, generator=torch.Generator().manual_seed(0))
    f_acc = [float((o.logits.argmax(1) == y).float().mean()) for o in fgsm]
    p_acc = [float((o.logits.argmax(1) == y).float().mean()) for o in pgd]
    assert all(p <= f for p, f in zip(p_acc, f_acc, strict=True)), (p_acc, f_acc)
    assert p_acc[-1] < p_acc[0]  # the attack does something
    # The FGSM sweep's one gradient gives the same images as one run per epsilon.
    with inference_scope(model):
        single = FGSM().perturb(model, x, y, 0.05)
    torch.testing.assert_close(fgsm[2].images, single)


def test_early_stop_and_restarts_never_raise_robust_accuracy() -> None:
    model, x, y = _trained_tiny()
    accs = {}
    with inference_scope(model):
        for label, attack in {
            "full": PGD(steps=5, early_stop=False),
            "early": PGD(steps=5, early_stop=True),
            "restarts": PGD(steps=5, early_stop=True, restarts=3),
        }.items():
            out = attack.run(model, x, y, 0.1, generator=torch.Generator().manual_seed(0))
            accs[label] = float((out.logits.argmax(1) == y).float().mean())
    assert accs["early"] <= accs["full"]
    assert accs["restarts"] <= accs["early"]


def test_attacks_leave_parameter_gradients_and_mode_alone() -> None:
    model, x, y = _trained_tiny()
    model.train()
    marker = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, m in zip(model.parameters(), marker, strict=True):
        p.grad = m.clone()
    for attack in (FGSM(), PGD(steps=2), PGD(norm="l2", steps=2)):
        attack.perturb(model, x[:8], y[:8], 0.1)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    for p, m in zip(model.parameters(), marker, strict=True):
        assert torch.equal(p.grad, m)  # type: ignore[arg-type]


def test_attack_settings_are_validated() -> None:
    assert {"fgsm_linf", "fgsm_l2", "pgd_linf", "pgd_l2", "mifgsm_linf", "mifgsm_l2"} <= set(ATTACKS.names())
    with pytest.raises(ConfigError):
        PGD(norm="l1")
    with pytest.raises(ConfigError):
        PGD(steps=0)
    with pytest.raises(ConfigError):
        FGSM(loss="hinge")
    with pytest.raises(ConfigError):
        FGSM().perturb(nn.Flatten(), torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), -0.1)


class _BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd"])
def test_adversarial_examples_for_training(method: str) -> None:
    torch.manual_seed(0)
    model = _BNNet()
    x = torch.rand(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    eps = 0.05
    adv = adversarial_examples(
        model, x, y, method=method, epsilon=eps, steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k  # weights and BatchNorm running statistics kept
    assert not adv.requires_grad
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    again = adversarial_examples(
        model, x, y, method=method, epsilon=eps, steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(adv, again)  # reproducible from the generator
    # The attack raises the training loss (train-mode forward, as the loop uses it).
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
        model.load_state_dict(stats)


def test_fgsm_rs_is_one_step_of_1_25_epsilon_from_a_random_start() -> None:
    model, x, y = _linear_case()
    eps = 0.1
    adv = adversarial_examples(
        model, x, y, method="fgsm_rs", epsilon=eps, generator=torch.Generator().manual_seed(5)
    )
    start = x + random_start(x, eps, "linf", torch.Generator().manual_seed(5))
    direction = torch.where(y == 1, -1.0, 1.0).view(-1, 1, 1, 1) * model.w.detach().sign().view(1, 1, 4, 4)
    expected = x + (start - x + 1.25 * eps * direction).clamp(-eps, eps)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    # PGD training examples equal the plain PGD iterate (no early stop, one run).
    pgd = adversarial_examples(
        model, x, y, method="pgd", epsilon=eps, steps=4, generator=torch.Generator().manual_seed(5)
    )
    ref = pgd_perturb(model, x, y, epsilon=eps, steps=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pgd, ref)
    with pytest.raises(ConfigError):
        adversarial_examples(model, x, y, method="free", epsilon=eps)


def test_registry_binds_the_norm_and_declares_capabilities() -> None:
    for name in ATTACKS.names():
        entry = ATTACKS.get(name)
        attack = entry()
        assert name == f"{entry.cls.name}_{attack.norm}" and attack.norm in entry.cls.norms
        assert entry(**attack.settings()).settings() == attack.settings()  # settings round-trip
        assert set(attack.convergence_settings) <= set(attack.settings())
        assert attack.iterative == bool(attack.convergence_settings)
    caps = {cls.name: (cls.iterative, cls.shares_gradient) for cls in (FGSM, PGD, MIFGSM)}
    assert caps == {"fgsm": (False, True), "pgd": (True, False), "mifgsm": (True, False)}
    assert PGD.convergence_settings == ("steps", "restarts") and MIFGSM.convergence_settings == ("steps",)
    pgd = ATTACKS.get("pgd_l2")(steps=4, restarts=2)
    assert isinstance(pgd, PGD) and pgd.norm == "l2" and (pgd.steps, pgd.restarts) == (4, 2)
    with pytest.raises(ConfigError, match="unknown setting.*decay"):
        ATTACKS.get("pgd_linf")(decay=0.5)
    with pytest.raises(ConfigError, match="unknown setting.*norm"):
        ATTACKS.get("pgd_linf")(norm="l2")  # the name binds the norm
    with pytest.raises(ConfigError, match="registered: fgsm_linf"):
        ATTACKS.get("pgd")


class LinearK(nn.Module):
    """Logits ``W x + b`` on flattened images: a K-class linear model with a closed-form gradient."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(b.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T + self.b


def test_mifgsm_two_steps_by_hand() -> None:
    w = torch.tensor([[1.0, 0.0, -3.0, -1.0], [-2.0, -1.0, 3.0, 0.0], [1.0, 2.0, -1.0, -3.0]])
    b = torch.zeros(3)
    model = LinearK(w, b)
    x0 = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    eps, steps = 0.4, 2
    alpha = eps / steps  # the default step

    def ce_grad(x: torch.Tensor) -> torch.Tensor:
        # d CE / dx = W^T (softmax(W x + b) - onehot(y)) for a linear model.
        p = torch.softmax(w @ x.flatten() + b, dim=0)
        return (w.T @ (p - F.one_hot(y, 3)[0].float())).view_as(x)

    def by_hand(mu: float) -> torch.Tensor:
        g1 = ce_grad(x0) / ce_grad(x0).abs().sum()
        x1 = x0 + (alpha * g1.sign()).clamp(-eps, eps)
        g2 = mu * g1 + ce_grad(x1) / ce_grad(x1).abs().sum()
        return (x0 + (x1 - x0 + alpha * g2.sign()).clamp(-eps, eps)).clamp(0, 1)

    # The first gradient has signs (-, +, +, -); at x1 the second and fourth flip. Momentum
    # (mu = 1) keeps the first direction there; without it (mu = 0) they step back to 0.5.
    torch.testing.assert_close(by_hand(1.0), torch.tensor([0.1, 0.9, 0.9, 0.1]).view(1, 1, 2, 2))
    torch.testing.assert_close(by_hand(0.0), torch.tensor([0.1, 0.5, 0.9, 0.5]).view(1, 1, 2, 2))
    for mu in (1.0, 0.0):
        out = MIFGSM(steps=steps, decay=mu).run(model, x0, y, eps)
        torch.testing.assert_close(out.images, by_hand(mu), atol=1e-6, rtol=0)
        torch.testing.assert_close(out.logits, model(by_hand(mu)).detach(), atol=1e-5, rtol=0)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_mifgsm_matches_torchattacks() -> None:
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = _trained_tiny()
    eps, alpha, steps = 0.1, 0.02, 6
    ours = MIFGSM(steps=steps, step_size=alpha, decay=1.0).perturb(model, x, y, eps)
    theirs = torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps, decay=1.0)(x, y)
    # torchattacks keeps x + delta, stresslab delta: a few ulps apart per step.
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    with torch.no_grad():
        acc = [float((model(a).argmax(1) == y).float().mean()) for a in (x, ours)]
    assert acc[1] < acc[0]  # the attack does something on this model


def test_scope_for_training_examples_keeps_mode_and_restores_buffers() -> None:
    model = _BNNet().train()
    model.net[1].eval()  # a frozen BatchNorm inside a training model stays as it is
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with inference_scope(model, eval_mode=False, restore_buffers=True):
        assert model.training and not model.net[1].training
        assert not any(p.requires_grad for p in model.parameters())
        model.net[1].train()
        model(torch.rand(4, 1, 8, 8))  # updates the running statistics
        model.net[1].eval()
    assert model.training and not model.net[1].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
