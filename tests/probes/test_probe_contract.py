"""One contract for every registered probe, on a tiny 2-class dataset and a tiny model.

Each probe in ``PROBES.names()`` runs once (in requirement order, sharing one context, as
in a run), with small settings from ``SMALL``; a probe missing there runs with its defaults.
Each test then checks one promise of :class:`~stresslab.probes.base.Probe` for every probe.
"""

from __future__ import annotations

import inspect
import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.models.base import Classifier
from stresslab.probes import PROBES, build_probe
from stresslab.probes.base import Headline, Offer, Probe, ProbeContext, ProbeResult
from stresslab.probes.predictions import Predictions
from stresslab.runs.directory import RunDir
from stresslab.runs.prepare import check_sample, probe_order
from stresslab.runs.storage import load_result, save_result
from stresslab.train.config import TrainConfig
from tests.conftest import make_split

# Small settings per probe so the whole file stays well under a minute on 2 cores.
SMALL: dict[str, dict[str, Any]] = {
    "failures": {"n_uncertain": 4, "gallery_size": 4, "per_pair": 2},
    "explain": {
        "n_high_confidence": 2,
        "n_uncertain": 1,
        "n_correct": 2,
        "methods": {"gradcam": {}, "saliency": {}, "occlusion": {"window": 4, "stride": 4}},
        "curve_steps": 4,
        "random_maps": 1,
        "road_images": 8,
        "road_percentages": [50],
        "sensitivity_images": 4,
        "sensitivity_samples": 2,
    },
    "adversarial": {
        "attacks": {"fgsm_linf": {}, "pgd_linf": {"steps": 2}},
        "epsilons": [0.0, 0.1],
        "max_images": 16,
        "gallery_images": 1,
    },
    "corruption": {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5], "max_images": 16},
    "representation": {"k": 3, "max_train": 64, "max_test": 32, "map_points": 32, "linear_max_iter": 50},
    "label_issues": {"gallery_size": 4, "max_rows": 5, "n_pairs": 2},
    "shortcut": {"max_images": 32, "n_transplant": 16, "refine_images": 2},
}


class BNNet(Classifier):
    """Conv -> BatchNorm -> ReLU -> pool -> linear: buffers a probe in train mode would move."""

    cam_layer = "body.0"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Linear(16, info.num_classes)


@dataclass
class Ran:
    """One probe's run: the probe, its result, and the model's state around the run."""

    probe: Probe
    result: ProbeResult
    before: dict[str, Any]
    after: dict[str, Any]


def _state(model: nn.Module) -> dict[str, Any]:
    """Weights and buffers (copies), each module's mode, hooks and parameter gradients."""
    hooks = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
    )
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": {name: m.training for name, m in model.named_modules()},
        "hooks": {name: sum(len(getattr(m, h, {})) for h in hooks) for name, m in model.named_modules()},
        "grads": {name: p.grad is None for name, p in model.named_parameters()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
    }


def _train(model: nn.Module, split: Split) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = to_float(split.train_x), split.train_y.long()
    model.train()
    for _ in range(25):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    split = make_split(n_train=96, n_val=32, n_test=48, size=16, classes=2, seed=3)
    torch.manual_seed(0)
    model = BNNet(split.info)
    _train(model, split)
    model.eval()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=32)
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=32)
    ctx = ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=32,
        predictions=preds,
        val_predictions=vpreds,
        train_config=TrainConfig(epochs=1, batch_size=32),
        model_factory=lambda: BNNet(split.info),
    )
    # The probes get the model in train mode: one that runs it without setting (and then
    # restoring) eval mode would move the BatchNorm statistics, which the checks catch.
    model.train()
    out: dict[str, Ran] = {}
    for name in probe_order(list(PROBES.names())):
        probe = build_probe(name, SMALL.get(name, {}))
        probe.check(model, check_sample(split, model))
        before = _state(model)
        torch.manual_seed(0)
        result = probe.run(ctx)
        out[name] = Ran(probe, result, before, _state(model))
        ctx.results[name] = result
        plt.close("all")  # the figures stay usable (saved below), only pyplot lets go of them
    return out


def test_the_small_settings_name_registered_probes() -> None:
    assert set(SMALL) <= set(PROBES.names())


@pytest.mark.parametrize("name", PROBES.names())
def test_declares_its_place_headlines_and_offers(name: str) -> None:
    cls = PROBES.get(name)
    assert cls.name == name
    assert isinstance(cls.order, int) and not isinstance(cls.order, bool)
    assert isinstance(cls.headlines, tuple) and all(isinstance(h, Headline) for h in cls.headlines)
    assert all(h.metric and h.label for h in cls.headlines)
    assert cls.offers is None or (isinstance(cls.offers, type) and issubclass(cls.offers, Offer))
    assert all(req in PROBES for req in cls.requires)
    assert isinstance(cls.retired, dict)
    # Every setting is keyword-only with a default, so a config's mapping is the whole interface.
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params), params
    build_probe(name, {})


@pytest.mark.parametrize("name", PROBES.names())
def test_check_passes_and_is_repeatable(name: str) -> None:
    model_split = make_split(n_test=4, size=16, classes=2)
    model = BNNet(model_split.info).eval()
    sample = check_sample(model_split, model)
    state = _state(model)
    probe = build_probe(name, SMALL.get(name, {}))
    probe.check(model, sample)
    probe.check(model, sample)  # a second check changes nothing and does not fail
    _assert_same(state, _state(model), name)


@pytest.mark.parametrize("name", PROBES.names())
def test_runs_and_offers_what_it_declares(name: str, ran: dict[str, Ran]) -> None:
    res = ran[name].result
    assert isinstance(res, ProbeResult)
    assert res.metrics, f"{name} reported no metric"
    assert all(
        isinstance(v, (int, float)) and torch.isfinite(torch.tensor(float(v))) for v in res.metrics.values()
    )
    cls = PROBES.get(name)
    if cls.offers is not None:
        assert isinstance(res.offer, cls.offers)
    else:
        assert res.offer is None
    assert set(res.captions) <= set(res.figures)


@pytest.mark.parametrize("name", PROBES.names())
def test_leaves_the_model_as_it_found_it(name: str, ran: dict[str, Ran]) -> None:
    _assert_same(ran[name].before, ran[name].after, name)


def _assert_same(before: dict[str, Any], after: dict[str, Any], name: str) -> None:
    for key in ("modes", "hooks", "grads", "requires_grad"):
        changed = {k for k in before[key] if before[key][k] != after[key].get(k)}
        assert not changed, f"{name} changed {key} of {sorted(changed)}"
    tensors = before["tensors"]
    assert set(tensors) == set(after["tensors"]), name
    moved = [k for k, v in tensors.items() if not torch.equal(v, after["tensors"][k])]
    assert not moved, f"{name} changed {moved}"


def test_the_model_checks_catch_a_probe_that_breaks_the_contract() -> None:
    model = BNNet(make_split(n_test=4, size=16, classes=2).info).train()
    before = _state(model)
    model.body[1].eval()
    with pytest.raises(AssertionError, match="changed modes of"):
        _assert_same(before, _state(model), "bad")
    model.train()
    handle = model.body[0].register_forward_hook(lambda *a: None)
    with pytest.raises(AssertionError, match="changed hooks of"):
        _assert_same(before, _state(model), "bad")
    handle.remove()
    model(torch.rand(4, 1, 16, 16))  # train mode: the BatchNorm statistics move
    with pytest.raises(AssertionError, match=r"changed \['body\.1\.running_mean'"):
        _assert_same(before, _state(model), "bad")


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", PROBES.names())
def test_saves_and_reloads_identically(name: str, ran: dict[str, Ran], tmp_path: Path) -> None:
    res = ran[name].result
    run = RunDir.create(tmp_path / "run")
    record = save_result(run, name, res, 1.0)
    back = load_result(run.result_json(name))
    assert back.metrics == _json(res.metrics)
    assert [asdict(t) for t in back.tables] == _json([asdict(t) for t in res.tables])
    assert back.warnings == res.warnings and back.summary == res.summary
    data = dict(back.data)
    files = data.pop("figure_files")
    assert files == record["figures"] and len(files) == len(res.figures)
    assert [f["caption"] for f in files] == [res.captions.get(stem, "") for stem in res.figures]
    assert all((run.results / f["file"]).is_file() for f in files)
    assert data == _json(res.data)
    assert type(back.offer) is type(res.offer)
    if res.offer is not None:
        assert _json(asdict(back.offer)) == _json(asdict(res.offer))  # type: ignore[call-overload]


@pytest.mark.parametrize("name", PROBES.names())
def test_every_headline_label_fills_from_its_saved_settings(name: str, ran: dict[str, Ran]) -> None:
    res = ran[name].result
    settings = _json(res.data).get("settings", {})
    for h in PROBES.get(name).headlines:
        fields = [f for _, f, _, _ in string.Formatter().parse(h.label) if f is not None]
        missing = [f for f in fields if f not in settings]
        assert not missing, f"{name}: headline {h.label!r} has {missing} not in data['settings']"
        h.label.format(**settings)
        if fields:
            # A headline metric may be left out only where the probe says why (undefined).
            assert h.metric in res.metrics or res.warnings, f"{name}: headline metric {h.metric} not reported"
