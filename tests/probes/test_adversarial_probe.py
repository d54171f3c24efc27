"""The adversarial probe on tiny data: numbers, checks, warnings, and a model left untouched."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.attacks import ATTACKS, FGSM
from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.probes import build_probe
from stresslab.probes.adversarial import AdversarialProbe, AttackRun, default_threat_models
from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions
from stresslab.scoped import inference_scope
from tests.conftest import make_split

SMALL = {
    "epsilons": [0.0, 0.05, 0.1, 0.2],
    "l2_epsilons": [0.0, 0.5, 1.0],
    "max_images": 48,
    "gallery_images": 2,
    "attacks": {"fgsm_linf": {}, "pgd_linf": {"steps": 3}, "pgd_l2": {"steps": 3}},
}


class BNNet(Classifier):
    """Conv -> BatchNorm -> ReLU -> pool -> linear."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Linear(16, info.num_classes)


def _trained(split: Split) -> BNNet:
    torch.manual_seed(0)
    model = BNNet(split.info)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = to_float(split.train_x), split.train_y
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _ctx(model: nn.Module, split: Split, seed: int = 0) -> ProbeContext:
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=32)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=32)
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=seed,
        batch_size=32,
        predictions=preds,
        val_predictions=vpreds,
    )


@pytest.fixture(scope="module")
def trained() -> tuple[BNNet, Split]:
    split = make_split(n_train=192, n_test=80, classes=3, seed=2)
    return _trained(split), split


def test_probe_leaves_the_model_as_it_came(trained: tuple[BNNet, Split]) -> None:
    model, split = trained
    model.train()  # e.g. a probe run in the middle of training
    state = {k: v.clone() for k, v in model.state_dict().items()}
    marker = [torch.full_like(p, 3.0) for p in model.parameters()]
    for p, m in zip(model.parameters(), marker, strict=True):
        p.grad = m.clone()
    res = AdversarialProbe(
        **{**SMALL, "attacks": {"fgsm_linf": {}, "pgd_linf": {"steps": 3}}, "gallery_images": 0}
    ).run(_ctx(model, split))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # weights and BatchNorm running statistics
    for p, m in zip(model.parameters(), marker, strict=True):
        assert p.requires_grad and torch.equal(p.grad, m)  # type: ignore[arg-type]
    for mod in model.modules():
        assert not (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks)
    checks = {(r[0], r[1]): r[2] for r in res.tables[-1].rows}
    assert checks[("model in eval mode during attacks", "model")] == "pass"
    assert checks[("BatchNorm statistics and buffers untouched", "model")] == "pass"
    for p in model.parameters():
        p.grad = None
    model.eval()


def test_probe_numbers_tables_and_figures(trained: tuple[BNNet, Split]) -> None:
    model, split = trained
    model.eval()
    ctx = _ctx(model, split)
    res = build_probe("adversarial", {**SMALL, "confusion_epsilon": 0.1}).run(ctx)
    m = res.metrics
    assert all(math.isfinite(v) for v in m.values())
    assert m["n_images"] == 48
    # epsilon 0 is clean accuracy; accuracy falls under attack; robust accuracy is the worst case.
    for spec in ("fgsm_linf", "pgd_linf"):
        assert m[f"{spec}.acc_eps0"] == m["clean_accuracy"]
        assert m[f"{spec}.acc_eps0.2"] <= m[f"{spec}.acc_eps0.05"]
    assert m["pgd_l2.acc_eps0"] == m["clean_accuracy"]
    assert m["robust_accuracy"] <= min(m["fgsm_linf.acc_eps0.2"], m["pgd_linf.acc_eps0.2"])
    assert m["epsilon"] == 0.2 and m["l2_epsilon"] == 1.0  # the default reporting epsilon is the largest
    assert m["clean_accuracy"] > 0.8 and m["pgd_linf.acc_eps0.2"] < m["clean_accuracy"]
    # The whole-test-set FGSM matches an independent run of the attack, and the confusion matrix counts it.
    x, y = to_float(split.test_x), split.test_y
    with inference_scope(model):
        adv = FGSM().perturb(model, x, y, 0.1)
        acc = float((model(adv).argmax(1) == y).float().mean())
    assert m["fgsm_test_set.accuracy"] == pytest.approx(acc)
    cm = torch.tensor(res.data["adversarial_confusion"])
    assert int(cm.sum()) == len(y) and float(cm.diag().sum()) / len(y) == pytest.approx(acc)
    titles = [t.title for t in res.tables]
    assert titles == [
        "Accuracy versus L-inf epsilon",
        "Accuracy versus L2 epsilon",
        "Robust accuracy per class",
        "Validity checks",
    ]
    checks = res.tables[-1].rows
    assert {r[2] for r in checks} <= {"pass", "fail"} and len(checks) >= 10
    assert sum(r[2] == "fail" for r in checks) == m["checks_failed"] == len(res.warnings)
    assert {"accuracy_vs_epsilon_linf", "accuracy_vs_epsilon_l2", "adversarial_confusion"} <= set(res.figures)
    # A gallery per attack and non-zero epsilon at which it flipped an image, and only there.
    index = res.data["index"]
    flipped_any = set()
    for name in ("fgsm_linf", "pgd_linf", "pgd_l2"):
        for e in res.data["epsilons"]["l2" if name.endswith("l2") else "linf"]:
            shown = res.data["galleries"][name].get(f"{e:.4g}")
            if e == 0 or shown is None:
                continue
            flipped_any.add(f"gallery_{name}_eps{e:.4g}")
            assert 0 < len(shown) <= 2 and set(shown) <= set(index)
    assert {s for s in res.figures if s.startswith("gallery_")} == flipped_any
    assert {"gallery_fgsm_linf_eps0.2", "gallery_pgd_linf_eps0.2", "gallery_pgd_l2_eps1"} <= flipped_any
    assert all(s in res.captions for s in res.figures)
    # SSIM beside each epsilon: 1 on the clean images, falling as FGSM moves every pixel further.
    fgsm_ssim = [m[f"fgsm_linf.ssim_eps{e:g}"] for e in (0.0, 0.05, 0.1, 0.2)]
    assert fgsm_ssim[0] == 1.0 and all(a > b for a, b in itertools.pairwise(fgsm_ssim))
    table = res.tables[0]
    assert table.columns == [
        "epsilon",
        "fgsm_linf",
        "pgd_linf",
        "worst case",
        "SSIM fgsm_linf",
        "SSIM pgd_linf",
    ]
    assert table.rows[0][-1] == 1.0
    assert m["fgsm_linf.ssim_threshold_epsilon"] in (0.0, 0.05, 0.1, 0.2) and m["ssim_threshold"] == 0.95
    assert any("Can a person tell?" in line and "0.95" in line for line in res.summary)
    # No zero gradient here: no attack was added, and the strongest attack sets robust accuracy.
    assert res.data["added_attacks"] == {}
    by = res.data["robust_accuracy_by_attack"]
    assert res.data["robust_accuracy_set_by"] == min(by, key=lambda k: by[k])
    assert res.data["robust_accuracy_set_by"] in res.summary[0]
    assert len(res.data["index"]) == 48 and len(res.data["robust_correct"]["linf"]) == 48


def test_probe_is_reproducible_from_the_seed(trained: tuple[BNNet, Split]) -> None:
    model, split = trained
    model.eval()
    settings = {
        **SMALL,
        "attacks": {"pgd_linf": {"steps": 3}},
        "convergence_check": False,
        "gallery_images": 0,
    }
    a = AdversarialProbe(**settings).run(_ctx(model, split, seed=5))
    b = AdversarialProbe(**settings).run(_ctx(model, split, seed=5))
    assert a.metrics == b.metrics
    assert a.data["index"] == b.data["index"]


class Quantized(Classifier):
    """Rounds its input (zero input gradient everywhere) and counts its calls in a buffer."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.register_buffer("calls", torch.zeros(()))
        self.head = nn.Linear(info.channels * info.height * info.width, info.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1  # a side effect the buffer check must catch
        return torch.round(x * 4).flatten(1) / 4


def test_failed_checks_become_warnings() -> None:
    split = make_split(n_test=30, classes=3)
    torch.manual_seed(0)
    model = Quantized(split.info)
    res = AdversarialProbe(attacks=["fgsm_linf"], epsilons=[0.0, 0.1], max_images=0).run(_ctx(model, split))
    failed = {r[0] for r in res.tables[-1].rows if r[2] == "fail"}
    assert "input gradients are non-zero" in failed
    assert "BatchNorm statistics and buffers untouched" in failed
    assert any("all-zero input gradient" in w for w in res.warnings)
    assert res.metrics["n_images"] == 30  # max_images=0 attacks every test image


def test_default_threat_models_and_bad_settings() -> None:
    gray = default_threat_models(DatasetInfo("f", tuple("abc"), 1, 28, 28, (0.5,), (0.5,)))
    assert gray["linf"].epsilons[0] == 0.0 and gray["linf"].epsilon == 0.1 and len(gray["linf"].epsilons) >= 6
    color = default_threat_models(DatasetInfo("c", tuple("abc"), 3, 32, 32, (0.5,) * 3, (0.5,) * 3))
    assert color["linf"].epsilon == pytest.approx(8 / 255) and color["l2"].epsilon == 0.5
    with pytest.raises(ConfigError):
        build_probe("adversarial", {"attacks": ["cw_linf"]})
    with pytest.raises(ConfigError):
        build_probe("adversarial", {"epsilons": [-0.1]})


def test_per_attack_settings_and_mifgsm_through_the_probe(trained: tuple[BNNet, Split]) -> None:
    model, split = trained
    model.eval()
    ctx = _ctx(model, split)
    settings = {
        "attacks": {"mifgsm_linf": {"steps": 3, "decay": 0.5}, "fgsm_linf": None},
        "epsilons": [0.0, 0.1, 0.2],
        "max_images": 48,
        "gallery_images": 1,
    }
    res = build_probe("adversarial", settings).run(ctx)
    m = res.metrics
    assert m["mifgsm_linf.acc_eps0"] == m["clean_accuracy"] > 0.8
    assert m["mifgsm_linf.acc_eps0.2"] < m["clean_accuracy"]
    # An iterative attack gets the convergence runs it declares (steps only: no restarts).
    assert "mifgsm_linf.acc_2x_steps" in m and "mifgsm_linf.acc_2x_restarts" not in m
    assert "fgsm_linf.acc_2x_steps" not in m
    assert m["robust_accuracy"] <= min(m["mifgsm_linf.acc_eps0.2"], m["mifgsm_linf.acc_2x_steps"])
    checks = {r[0] for r in res.tables[-1].rows}
    assert {"MI-FGSM does no worse than FGSM", "doubling steps changes robust accuracy by < 1.00%"} <= checks
    assert not any(c.startswith("doubling restarts") for c in checks)
    assert {"gallery_mifgsm_linf_eps0.2", "gallery_fgsm_linf_eps0.2"} <= set(res.figures)
    assert res.data["settings"]["attacks"]["mifgsm_linf"] == {
        "loss": "ce",
        "steps": 3,
        "step_size": None,
        "decay": 0.5,
    }
    # The probe samples through the context, so its images join other probes' per image.
    assert res.data["index"] == split.test_index[ctx.sample(48, "adversarial")].tolist()
    assert ctx.samples["adversarial"] == 48


def test_settings_forms_and_the_retired_flat_keys() -> None:
    listed = AdversarialProbe(attacks=["pgd_linf", "fgsm_linf"])
    assert listed.attacks["pgd_linf"].settings() == ATTACKS.get("pgd_linf")().settings()
    assert listed.confusion_attack is listed.attacks["fgsm_linf"]
    mapped = AdversarialProbe(attacks={"pgd_linf": {"steps": 3, "restarts": 2, "loss": "margin"}})
    pgd = mapped.attacks["pgd_linf"]
    assert (pgd.steps, pgd.restarts, pgd.loss) == (3, 2, "margin")  # type: ignore[attr-defined]
    assert mapped.confusion_attack.settings() == ATTACKS.get("fgsm_linf")().settings()
    # The flat settings of earlier versions are refused, naming the per-attack form.
    flat = r"adversarial\.steps is no longer a setting; write it as \S+attacks: \{pgd_linf: \{steps: 3"
    with pytest.raises(ConfigError, match=flat):
        build_probe("adversarial", {"attacks": ["pgd_linf"], "steps": 3})
    with pytest.raises(ConfigError, match=r"adversarial\.attacks: \{pgd_linf: \{random_start: false\}\}"):
        build_probe("adversarial", {"random_start": False})
    with pytest.raises(ConfigError, match=r"probes\.adversarial\.attacks\.pgd_linf\.stpes: unknown setting"):
        build_probe("adversarial", {"attacks": {"pgd_linf": {"stpes": 3}}})
    with pytest.raises(ConfigError, match=r"probes\.adversarial\.attacks\.fgsm_linf\.steps"):
        build_probe("adversarial", {"attacks": {"fgsm_linf": {"steps": 3}}})
    with pytest.raises(ConfigError, match=r"probes\.adversarial\.attacks\.pgd_linf: pgd steps must be >= 1"):
        build_probe("adversarial", {"attacks": {"pgd_linf": {"steps": 0}}})
    with pytest.raises(ConfigError, match=r"probes\.adversarial\.attacks\.cw_linf: unknown attack"):
        build_probe("adversarial", {"attacks": {"cw_linf": {}}})


class Sure(Classifier):
    """Always class 0 by a margin no attack within epsilon 0.2 can close (non-zero input gradient)."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.head = nn.Linear(1, info.num_classes)
        with torch.no_grad():
            self.head.weight.fill_(0.0)
            self.head.weight[0] = 1.0
            self.head.bias.copy_(torch.tensor([20.0] + [0.0] * (info.num_classes - 1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(dim=1, keepdim=True)


def test_undefined_values_are_left_out_not_written_as_numbers() -> None:
    full = make_split(n_test=60, classes=3)
    zeros = full.test_y == 0
    split = Split(
        full.info, full.train_x, full.train_y, full.val_x, full.val_y, full.test_x[zeros], full.test_y[zeros]
    )
    model = Sure(split.info).eval()
    settings = {"attacks": ["fgsm_linf", "pgd_linf"], "epsilons": [0.0, 0.2], "max_images": 0}
    res = AdversarialProbe(**settings).run(_ctx(model, split))
    m = res.metrics
    assert m["robust_accuracy"] == 1.0 and m["pgd_linf.mean_adv_confidence"] > 0.99
    # No image was fooled: a mean confidence over no image is undefined, not 0.
    assert "pgd_linf.mean_adv_confidence_fooled" not in m
    assert "fgsm_linf.mean_adv_confidence_fooled" not in m
    assert any("undefined" in w and "pgd_linf.mean_adv_confidence_fooled" in w for w in res.warnings)
    assert all(math.isfinite(v) for v in m.values())
    # Classes 1 and 2 have no attacked image: blank cells, and the caption says why.
    per_class = next(t for t in res.tables if t.title == "Robust accuracy per class")
    assert per_class.rows[1] == ["class1", 0, None, None] and per_class.rows[2] == ["class2", 0, None, None]
    assert "class1, class2" in per_class.caption and "undefined" in per_class.caption
    # An accuracy over no image is undefined too.
    empty = AttackRun("fgsm_linf", FGSM(), (0.0,), correct=[torch.zeros(0, dtype=torch.bool)])
    assert empty.accuracy() == [None] and empty.accuracy_at(0.0) is None


def test_shipped_configs_use_the_per_attack_form() -> None:
    from stresslab.runs import config

    found = 0
    for f in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        settings = config.resolve(f).probes.get("adversarial")
        if settings is None:
            continue
        probe = build_probe("adversarial", settings)  # a flat setting of earlier versions raises
        assert isinstance(settings.get("attacks"), dict), f
        assert list(probe.attacks) == ["fgsm_linf", "pgd_linf"], f  # type: ignore[attr-defined]
        found += 1
    assert found >= 2


def test_smallest_epsilon_that_changes_each_prediction(trained: tuple[BNNet, Split]) -> None:
    model, split = trained
    model.eval()
    settings = {**SMALL, "attacks": {"fgsm_linf": {}}, "gallery_images": 0}
    res = build_probe("adversarial", settings).run(_ctx(model, split))
    eps, attack = res.data["flip_epsilon"]["linf"], res.data["flip_attack"]["linf"]
    assert len(eps) == len(res.data["index"]) == 48
    # Recompute by hand from independent FGSM runs at each epsilon of the sweep.
    pos = {int(i): p for p, i in enumerate(split.test_index.tolist())}
    rows = torch.tensor([pos[i] for i in res.data["index"]])
    x, y = to_float(split.test_x[rows]), split.test_y[rows]
    with inference_scope(model):
        clean = model(x).argmax(1)
        changed = {e: model(FGSM().perturb(model, x, y, e)).argmax(1) != clean for e in (0.05, 0.1, 0.2)}
    for j in range(48):
        first = next((e for e in (0.05, 0.1, 0.2) if bool(changed[e][j])), None)
        assert eps[j] == first and attack[j] == ("fgsm_linf" if first is not None else None)
    assert any(e is not None for e in eps)
