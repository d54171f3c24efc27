"""The adversarial probe's galleries of flipped images, SSIM beside each epsilon, and the
score-based attack that takes over where input gradients are zero."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from stresslab.attacks import FGSM, Square
from stresslab.data.base import Split, to_float
from stresslab.probes.adversarial import AdversarialProbe, AttackRun
from stresslab.probes.adversarial.gallery import galleries
from stresslab.probes.adversarial.numbers import similar_up_to
from stresslab.probes.adversarial.sweep import Sweeper
from stresslab.scoped import inference_scope
from tests.attacks.test_square import Rounding
from tests.conftest import TinyNet, make_split
from tests.probes.test_adversarial_probe import _ctx


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Many tiny forward passes: a second thread only adds overhead on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit(model: torch.nn.Module, split: Split, steps: int) -> torch.nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = to_float(split.train_x), split.train_y
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def test_gallery_keeps_the_first_images_the_attack_flipped() -> None:
    split = make_split(n_train=96, n_test=60, classes=3, seed=5)
    torch.manual_seed(0)
    model = _fit(TinyNet(split.info), split, 40)
    x, y = to_float(split.test_x), split.test_y
    eps = (0.0, 0.15, 0.3)
    sweeper = Sweeper(model, torch.device("cpu"), 16, lambda n: None)
    with inference_scope(model):
        clean = sweeper.clean(x, y)
        run = sweeper.sweep(AttackRun("fgsm_linf", FGSM(), eps), x, y, clean_correct=clean.correct, gallery=3)
        expected = {e: FGSM().perturb(model, x, y, e) for e in eps}
        preds = {e: model(expected[e]).argmax(1) for e in eps}
    assert float(clean.correct.float().mean()) > 0.8
    for e in eps:
        flipped = (clean.correct & (preds[e] != y)).nonzero().squeeze(1)
        if len(flipped) == 0:
            assert e not in run.gallery
            continue
        picked = run.gallery[e]
        # The first three flipped images in the order attacked, across batches of 16.
        assert picked.positions.tolist() == flipped[:3].tolist()
        assert torch.equal(picked.clean, x[picked.positions])
        torch.testing.assert_close(picked.adversarial, expected[e][picked.positions])
        assert bool(clean.correct[picked.positions].all())
        assert bool((run.preds[eps.index(e)][picked.positions] != y[picked.positions]).all())
    assert 0.0 not in run.gallery and len(run.gallery[0.3].positions) == 3
    assert len(clean.confidence) == len(y) and bool(((clean.confidence > 0) & (clean.confidence <= 1)).all())


def test_similar_up_to_reads_the_first_crossing() -> None:
    run = AttackRun("fgsm_linf", FGSM(), (0.0, 0.01, 0.02, 0.05))
    run.ssim = [
        torch.tensor([1.0, 1.0]),
        torch.tensor([0.97, 0.95]),
        torch.tensor([0.9, 0.96]),
        torch.tensor([0.96]),
    ]
    # Means 1, 0.96, 0.93, 0.96: the mean first falls below 0.95 at 0.02, so 0.01 is the answer
    # even though 0.05 is above again.
    assert similar_up_to(run, 0.95) == 0.01
    assert similar_up_to(run, 0.9) == 0.05
    assert similar_up_to(AttackRun("fgsm_linf", FGSM(), (0.0,)), 0.95) is None  # not measured


def _rounding(split: Split) -> Rounding:
    torch.manual_seed(0)
    return _fit(Rounding(split.info), split, 30)  # type: ignore[return-value]


def test_zero_gradients_bring_in_square_which_sets_robust_accuracy() -> None:
    split = make_split(n_train=96, n_test=48, classes=3, seed=3)
    model = _rounding(split)
    settings = {
        "attacks": ["fgsm_linf", "pgd_linf"],
        "epsilons": [0.0, 0.25],
        "max_images": 0,
        "gallery_images": 2,
    }
    res = AdversarialProbe(**settings).run(_ctx(model, split))  # type: ignore[arg-type]
    m = res.metrics
    assert m["clean_accuracy"] > 0.9
    # PGD sees zero gradients and leaves the images as they were; Square fools them.
    assert m["pgd_linf.acc_eps0.25"] > 0.9 and m["square_linf.acc_eps0.25"] < 0.2
    assert set(res.data["added_attacks"]) == {"square_linf"}
    assert "all-zero input gradient" in res.data["added_attacks"]["square_linf"]["reason"]
    assert res.data["added_attacks"]["square_linf"]["settings"]["n_queries"] == 1000
    # The headline is the worst case over every attack run, and says which one set it.
    assert m["robust_accuracy"] <= m["square_linf.acc_eps0.25"]
    assert res.data["robust_accuracy_set_by"] == "square_linf"
    assert res.data["settings"]["robust_accuracy_set_by"] == "square_linf"
    assert "set by square_linf" in res.summary[0]
    assert any("square_linf (score-based, no gradients) ran automatically" in line for line in res.summary)
    failed = {r[0]: r[3] for r in res.tables[-1].rows if r[2] == "fail"}
    assert (
        "input gradients are non-zero" in failed
        and "square_linf ran because" in failed["input gradients are non-zero"]
    )
    assert "gradient masking" in failed["gradient attacks do no worse than Square (score-based)"]
    assert any("gradient attacks do no worse than Square" in w for w in res.warnings)
    assert "gallery_square_linf_eps0.25" in res.figures and "gallery_pgd_linf_eps0.25" not in res.figures
    assert "square_linf" in res.data["ssim"] and m["square_linf.ssim_eps0"] == 1.0
    assert "square_linf.acc_2x_n_queries" in m  # its convergence run, like any iterative attack


def test_square_on_request_is_not_added_twice_and_not_added_without_need() -> None:
    split = make_split(n_train=96, n_test=30, classes=3, seed=3)
    model = _rounding(split)
    requested = {"attacks": {"pgd_linf": {}, "square_linf": {"n_queries": 50}}, "epsilons": [0.0, 0.25]}
    res = AdversarialProbe(**requested, max_images=0, convergence_check=False).run(_ctx(model, split))  # type: ignore[arg-type]
    assert (
        res.data["added_attacks"] == {} and res.data["settings"]["attacks"]["square_linf"]["n_queries"] == 50
    )
    assert res.data["robust_accuracy_set_by"] == "square_linf"
    smooth = make_split(n_train=96, n_test=30, classes=3, seed=3)
    torch.manual_seed(0)
    tiny = _fit(TinyNet(smooth.info), smooth, 30)
    plain = AdversarialProbe(attacks=["fgsm_linf"], epsilons=[0.0, 0.1], max_images=0).run(_ctx(tiny, smooth))
    assert plain.data["added_attacks"] == {} and "square_linf.acc_eps0.1" not in plain.metrics


def test_every_attack_gets_galleries_with_predictions_and_confidence() -> None:
    split = make_split(n_train=96, n_test=40, classes=3, seed=5)
    torch.manual_seed(0)
    model = _fit(TinyNet(split.info), split, 40)
    settings = {
        "attacks": {"fgsm_linf": {}, "pgd_linf": {"steps": 3}, "square_linf": {"n_queries": 30}},
        "epsilons": [0.0, 0.3],
        "max_images": 0,
        "convergence_check": False,
        "gallery_images": 2,
    }
    ctx = _ctx(model, split)
    probe = AdversarialProbe(**settings)  # type: ignore[arg-type]
    res = probe.run(ctx)
    for name in ("fgsm_linf", "pgd_linf", "square_linf"):
        stem = f"gallery_{name}_eps0.3"
        assert stem in res.figures, stem
        titles = [ax.get_title() for ax in res.figures[stem].axes if ax.get_title()]
        assert len(titles) == 6  # two images: clean, change, adversarial
        assert "SSIM" in titles[1] and "(" in titles[0] and "(" in titles[2]
        assert "right on the clean image, wrong after the attack" in res.captions[stem]
    # The figures come from the typed result: a run with no flip has no gallery.
    found = probe._sweep(ctx, probe.threats(ctx), torch.arange(len(split.test_y)), 0.3)
    assert set(galleries(found, ["a", "b", "c"])) == {
        f"gallery_{r.name}_eps0.3" for r in found.runs if r.gallery
    }
    assert isinstance(found.runs[2].attack, Square)


def test_svhn_config_sweeps_to_the_epsilon_of_the_study() -> None:
    from pathlib import Path

    from stresslab.data.base import DatasetInfo
    from stresslab.probes import build_probe
    from stresslab.runs import config

    cfg = config.resolve(Path(__file__).parents[2] / "configs" / "svhn_adversarial_training.yaml")
    probe = build_probe("adversarial", cfg.probes["adversarial"])
    svhn = DatasetInfo("svhn", tuple("0123456789"), 3, 32, 32, (0.44,) * 3, (0.2,) * 3)

    class Ctx:
        info = svhn

    linf = probe.threats(Ctx())["linf"]  # type: ignore[attr-defined, arg-type]
    assert max(linf.epsilons) == 0.1 and linf.epsilon == 0.1 == cfg.train.adversarial.epsilon  # type: ignore[union-attr]
    assert len([e for e in linf.epsilons if e > 0]) >= 5
