"""The explain probe end to end on tiny data: cases, metrics, figures, model state."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.probes.base import PROBES, ProbeContext, ProbeResult, build_probe
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.predictions import Predictions

torch.set_num_threads(1)

FAST = {
    "occlusion_window": 4,
    "occlusion_stride": 2,
    "smoothgrad_samples": 3,
    "curve_steps": 6,
    "random_maps": 1,
    "cases_per_figure": 3,
}


class Net(Classifier):
    cam_layer = "body.2"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(24, info.num_classes)


def _split(channels: int = 1, background: float | None = 0.0, n: int = 60) -> Split:
    """Class k: a bright 4x4 square at a class-specific place on a black background, plus
    a few bright stray pixels; every fifth test label is wrong, so the model makes
    confident errors on the test set."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.zeros(n, channels, 12, 12, dtype=torch.uint8)
    for k in range(3):
        x[y == k, :, 1 + 3 * k : 5 + 3 * k, 1 + 3 * k : 5 + 3 * k] = 200
    stray = torch.rand(n, 1, 12, 12, generator=g) < 0.08
    x[stray.expand_as(x)] = 230
    info = DatasetInfo(
        "toy",
        ("circle", "square", "<b>tri</b>"),
        channels,
        12,
        12,
        (0.2,) * channels,
        (0.3,) * channels,
        background=background,
    )
    y_test = y.clone()
    y_test[::5] = (y_test[::5] + 1) % 3
    return Split(info, x, y, x[:6], y[:6], x, y_test, test_index=torch.arange(100, 100 + n))


def _ctx(split: Split, *, failures: ProbeResult | None = None, seed: int = 0) -> ProbeContext:
    torch.manual_seed(0)
    model = Net(split.info)
    opt = torch.optim.Adam(model.parameters(), 0.05)
    xf = to_float(split.train_x)
    for _ in range(25):
        opt.zero_grad()
        F.cross_entropy(model(xf), split.train_y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.train()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index)
    results = {"failures": failures} if failures is not None else {}
    return ProbeContext(model, split, torch.device("cpu"), seed, 32, preds, preds, results=results)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_registered_and_requires_failures() -> None:
    assert PROBES.get("explain") is ExplainProbe
    assert ExplainProbe.requires == ("failures",)
    with pytest.raises(ConfigError):
        build_probe("explain", {"methods": ["gradcam", "nope"]})
    with pytest.raises(ConfigError):
        build_probe("explain", {"windw": 3})


def test_probe_end_to_end_with_failures_results() -> None:
    split = _split()
    p0 = _ctx(split).predictions
    wrong = torch.nonzero(~p0.correct).flatten().tolist()
    assert len(wrong) >= 3, "the toy test set has wrong labels"
    rows = [
        {
            "position": i,
            "index": int(p0.index[i]),
            "true": int(p0.labels[i]),
            "pred": int(p0.preds[i]),
            "confidence": float(p0.confidence[i]),
            "entropy": float(p0.entropy[i]),
        }
        for i in wrong
    ]
    failures = ProbeResult(data={"high_confidence_errors": rows[:2], "most_uncertain": rows[2:3] + rows[:1]})
    ctx = _ctx(split, failures=failures)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    res = ExplainProbe(n_high_confidence=2, n_uncertain=2, n_correct_per_class=1, **FAST).run(ctx)

    cases = res.data["cases"]
    # Failures' cases first, in its order, duplicates dropped; then one correct case per class.
    assert [c["position"] for c in cases[:3]] == [r["position"] for r in rows[:3]]
    assert [c["kind"] for c in cases[3:]] == ["correct"] * 3
    assert all(c["index"] == c["position"] + 100 for c in cases)
    assert not any("failures probe did not run" in w for w in res.warnings)

    methods = ("gradcam", "saliency", "smoothgrad", "occlusion")
    for m in methods:
        for key in ("deletion_auc", "insertion_auc", "randomization_spearman"):
            assert f"{m}.{key}" in res.metrics
    for key in ("n_cases", "background_share_errors", "background_share_correct", "random.deletion_auc"):
        assert key in res.metrics
    assert res.metrics["n_cases"] == len(cases) == 6
    assert all(math.isfinite(v) for v in res.metrics.values())
    assert 0.0 <= res.metrics["background_share_errors"] <= 1.0

    assert list(res.figures) == ["cases_01", "cases_02", "deletion_insertion"]
    assert all(stem in res.captions for stem in res.figures)
    titles = [t.title for t in res.tables]
    assert titles[0] == "Quality of each explanation method"
    assert any("per true class" in t for t in titles)
    assert len(res.tables[0].rows) == len(methods)
    assert any("faithful than random" in s for s in res.summary)
    assert any("background" in s for s in res.summary)
    json.dumps(res.data)

    assert ctx.model.training
    assert _hooks(ctx.model) == 0
    assert all(p.grad is None and p.requires_grad for p in ctx.model.parameters())
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_probe_alone_derives_cases_and_is_reproducible() -> None:
    split = _split(channels=3, background=None)
    a = ExplainProbe(
        methods=("gradcam", "smoothgrad", "occlusion", "integrated_gradients"),
        n_high_confidence=3,
        n_uncertain=2,
        min_error_confidence=0.0,
        ig_steps=4,
        **FAST,
    ).run(_ctx(split))
    b = ExplainProbe(
        methods=("gradcam", "smoothgrad", "occlusion", "integrated_gradients"),
        n_high_confidence=3,
        n_uncertain=2,
        min_error_confidence=0.0,
        ig_steps=4,
        **FAST,
    ).run(_ctx(split))
    assert a.metrics == b.metrics
    assert any("failures probe did not run" in w for w in a.warnings)
    errors = [c for c in a.data["cases"] if c["kind"] == "high-confidence error"]
    assert errors and all(c["true"] != c["pred"] for c in errors)
    confs = [c["confidence"] for c in errors]
    assert confs == sorted(confs, reverse=True)
    # No background value: no background numbers.
    assert "background_share_errors" not in a.metrics
    assert len(a.tables) == 1
    assert "integrated_gradients.deletion_auc" in a.metrics


def test_oversized_occlusion_window_is_shrunk_with_a_warning() -> None:
    res = ExplainProbe(
        methods=("occlusion",),
        occlusion_window=20,
        n_high_confidence=1,
        n_uncertain=0,
        n_correct_per_class=0,
        min_error_confidence=0.0,
        curve_steps=4,
        random_maps=1,
    ).run(_ctx(_split()))
    assert any("occlusion window 20" in w for w in res.warnings)
    assert math.isfinite(res.metrics["occlusion.deletion_auc"])


def test_probe_reads_the_real_failures_probe() -> None:
    import stresslab.probes.failures  # noqa: F401  (registers "failures")

    split = _split()
    ctx = _ctx(split)
    ctx.results["failures"] = build_probe("failures", {}).run(ctx)
    high = ctx.results["failures"].data["high_confidence_errors"]
    res = ExplainProbe(
        methods=("gradcam",),
        n_high_confidence=2,
        n_uncertain=1,
        n_correct_per_class=0,
        curve_steps=4,
        random_maps=1,
    ).run(ctx)
    errors = [c for c in res.data["cases"] if c["kind"] == "high-confidence error"]
    assert [c["position"] for c in errors] == [r["position"] for r in high[:2]]
    assert not any("failures probe did not run" in w for w in res.warnings)
