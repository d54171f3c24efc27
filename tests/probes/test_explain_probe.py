"""The explain probe end to end on tiny data: cases, metrics, figures, model state."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.attributions import ATTRIBUTIONS
from stresslab.attributions.occlusion import Occlusion
from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.probes.base import PROBES, ProbeContext, ProbeResult, build_probe
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.failures import FailureCases, failure_cases
from stresslab.probes.predictions import Predictions

torch.set_num_threads(1)

FAST = {
    "curve_steps": 6,
    "random_maps": 1,
    "cases_per_figure": 3,
    "road_images": 16,
    "road_percentages": [20, 60],
    "sensitivity_images": 6,
    "sensitivity_samples": 2,
}
FAST_METHODS = {"gradcam": {}, "saliency": {}, "smoothgrad": {"samples": 3}, "occlusion": {"window": 4}}


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


def _ctx(
    split: Split, *, failures: ProbeResult | None = None, seed: int = 0, zero_head: bool = False
) -> ProbeContext:
    torch.manual_seed(0)
    model = Net(split.info)
    opt = torch.optim.Adam(model.parameters(), 0.05)
    xf = to_float(split.train_x)
    for _ in range(25):
        opt.zero_grad()
        F.cross_entropy(model(xf), split.train_y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    if zero_head:  # constant logits: every map and every curve is flat
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.zero_()
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
    with pytest.raises(ConfigError, match=r"probes\.explain\.methods\.occlusion\.windw"):
        build_probe("explain", {"methods": {"occlusion": {"windw": 3}}})
    with pytest.raises(ConfigError, match=r"probes\.explain\.methods\.smoothgrad"):
        build_probe("explain", {"methods": {"smoothgrad": {"samples": 0}}})
    with pytest.raises(ConfigError, match=r"probes\.explain\.methods\.occlusion"):
        build_probe("explain", {"methods": {"occlusion": {"fill": "purple"}}})
    with pytest.raises(ConfigError, match="probes.explain.methods"):
        build_probe("explain", {"methods": "gradcam"})


def test_methods_are_built_from_the_registry_in_either_form() -> None:
    assert {
        "gradcam",
        "gradcam_plus_plus",
        "saliency",
        "smoothgrad",
        "integrated_gradients",
        "occlusion",
    } <= set(ATTRIBUTIONS.names())
    listed = build_probe("explain", {"methods": ["gradcam", "saliency", "gradcam"]})
    assert isinstance(listed, ExplainProbe)
    assert list(listed.methods) == ["gradcam", "saliency"]
    assert all(type(m) is ATTRIBUTIONS.get(n) for n, m in listed.methods.items())
    mapped = build_probe(
        "explain", {"methods": {"occlusion": {"window": 6, "stride": 3, "fill": 0.25}, "gradcam": None}}
    )
    assert isinstance(mapped, ExplainProbe)
    assert list(mapped.methods) == ["occlusion", "gradcam"]
    assert mapped.methods["occlusion"].used_settings() == {"window": 6, "stride": 3, "fill": 0.25}
    assert mapped.methods["gradcam"].used_settings() == {"layer": None}
    # The defaults of the list form are the probe's documented defaults.
    default = ExplainProbe()
    assert list(default.methods) == ["gradcam", "saliency", "smoothgrad", "occlusion"]
    assert default.methods["smoothgrad"].used_settings() == {"samples": 20, "noise": 0.15}
    # Window and stride are shares of the image until prepared for a dataset: 8 and 2 on 28x28.
    occlusion = default.methods["occlusion"]
    assert occlusion.used_settings() == {"window": None, "stride": None, "fill": "gray"}
    assert isinstance(occlusion, Occlusion) and occlusion.sizes(28, 28) == (8, 2)


def test_the_flat_settings_of_earlier_versions_are_refused_naming_the_methods_form() -> None:
    cases = {
        "occlusion_window": (5, r"methods: \{occlusion: \{window: 5\}\}"),
        "occlusion_fill": ("mean", r"methods: \{occlusion: \{fill: mean\}\}"),
        "ig_steps": (7, r"methods: \{integrated_gradients: \{steps: 7\}\}"),
        "layer": ("body.0", r"methods: \{gradcam: \{layer: body\.0\}\} \(and gradcam_plus_plus"),
        "smoothgrad_samples": (3, r"methods: \{smoothgrad: \{samples: 3\}\}"),
    }
    for key, (value, form) in cases.items():
        message = rf"probes\.explain\.{key} is no longer a setting; write it as probes\.explain\.{form}"
        with pytest.raises(ConfigError, match=message):
            build_probe("explain", {"methods": ["gradcam", "occlusion"], key: value})


def test_probe_end_to_end_with_failures_results() -> None:
    split = _split()
    p0 = _ctx(split).predictions
    wrong = torch.nonzero(~p0.correct).flatten().tolist()
    assert len(wrong) >= 3, "the toy test set has wrong labels"
    offer = FailureCases(
        errors=wrong, high_confidence=wrong[:2], most_uncertain=[wrong[2], wrong[0]], threshold=0.9
    )
    ctx = _ctx(split, failures=ProbeResult(offer=offer))
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    res = ExplainProbe(
        n_high_confidence=2, n_uncertain=2, n_correct_per_class=1, methods=FAST_METHODS, **FAST
    ).run(ctx)

    cases = res.data["cases"]
    # Failures' cases first, in its order, duplicates dropped; then one correct case per class.
    assert [c["position"] for c in cases[:3]] == wrong[:3]
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

    assert list(res.figures) == ["cases_01", "cases_02", "deletion_insertion", "concentration_vs_uncertainty"]
    assert all(stem in res.captions for stem in res.figures)
    assert "Grad-CAM for the predicted and the true class" in res.captions["cases_01"]
    assert "occlusion drop in blue-white-red" in res.captions["cases_01"]
    # The concentration measures run on the quality sample, and the captions say so.
    concentration = next(t for t in res.tables if t.title.startswith("Map concentration"))
    assert "the 60 test images of the seeded random sample" in concentration.caption
    assert "Each sampled test image's map entropy" in res.captions["concentration_vs_uncertainty"]
    titles = [t.title for t in res.tables]
    assert titles[0] == "Quality of each explanation method"
    assert any("per true class" in t for t in titles)
    assert len(res.tables[0].rows) == len(methods)
    assert any("faithful than random" in s for s in res.summary)
    assert any("background" in s for s in res.summary)
    # The further tests, on the quality sample (here all 60 test images; ROAD on 16, max-sensitivity on 6).
    for m in methods:
        for key in ("road_morf", "road_lerf", "localisation", "localisation_rank"):
            assert 0.0 <= res.metrics[f"{m}.{key}"] <= 1.0
        assert -1.0 <= res.metrics[f"{m}.road_gap"] <= 1.0
        assert res.metrics[f"{m}.max_sensitivity"] >= 0.0
    assert 0.0 < res.metrics["object_area"] < 1.0
    further = next(t for t in res.tables if t.title == "Further tests of each explanation method")
    assert len(further.rows) == len(methods) and len(further.columns) == 7
    assert "ROAD" in further.caption and "on 16 images" in further.caption
    assert res.data["settings"]["further_tests"]["road_images"] == 16
    assert res.data["settings"]["further_tests"]["sensitivity_images"] == 6
    assert any(s.startswith("ROAD on 16 images") for s in res.summary)
    json.dumps(res.data)

    assert ctx.model.training
    assert _hooks(ctx.model) == 0
    assert all(p.grad is None and p.requires_grad for p in ctx.model.parameters())
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.slow
def test_probe_alone_derives_cases_and_is_reproducible() -> None:
    split = _split(channels=3, background=None)
    methods = {
        "gradcam": {},
        "smoothgrad": {"samples": 3},
        "occlusion": {"window": 4},
        "integrated_gradients": {"steps": 4},
    }
    settings = {"methods": methods, "n_high_confidence": 3, "n_uncertain": 2, "min_error_confidence": 0.0}
    a = ExplainProbe(**settings, **FAST).run(_ctx(split))  # type: ignore[arg-type]
    b = ExplainProbe(**settings, **FAST).run(_ctx(split))  # type: ignore[arg-type]
    assert a.metrics == b.metrics
    assert any("failures probe did not run" in w for w in a.warnings)
    errors = [c for c in a.data["cases"] if c["kind"] == "high-confidence error"]
    assert errors and all(c["true"] != c["pred"] for c in errors)
    confs = [c["confidence"] for c in errors]
    assert confs == sorted(confs, reverse=True)
    # No background value: no background numbers.
    assert "background_share_errors" not in a.metrics
    assert [t.title for t in a.tables] == [
        "Quality of each explanation method",
        "Further tests of each explanation method",
        "Map concentration against prediction uncertainty",
    ]
    assert "integrated_gradients.road_gap" in a.metrics and "gradcam.localisation" not in a.metrics
    assert "integrated_gradients.deletion_auc" in a.metrics


def test_oversized_occlusion_window_is_shrunk_with_a_warning() -> None:
    res = ExplainProbe(
        methods={"occlusion": {"window": 20}},
        n_high_confidence=1,
        n_uncertain=0,
        n_correct_per_class=0,
        min_error_confidence=0.0,
        curve_steps=4,
        random_maps=1,
        quality_images=0,  # the checks on the one case: no correct case to compare with
    ).run(_ctx(_split()))
    assert any("occlusion window 20" in w and "used 3x3" in w for w in res.warnings)
    concentration = next(t for t in res.tables if t.title.startswith("Map concentration"))
    assert "the explained cases, which are chosen" in concentration.caption
    assert "Grad-CAM" not in res.captions["cases_01"]  # occlusion alone: no true-class column
    assert math.isfinite(res.metrics["occlusion.deletion_auc"])
    # The record holds the window actually used (12 // 4 = 3), not the configured one.
    used = res.data["settings"]["method_settings"]["occlusion"]
    # The stride is its share of the 12-pixel side: round(12 / 14) = 1.
    assert used == {"window": 3, "stride": 1, "fill": "gray"}
    assert res.data["settings"]["occlusion"] == used
    grid = res.data["cases"][0]["occlusion_grid_pred"]
    assert len(grid) == math.ceil((12 - 3) / 1) + 1
    # No correct case: its background share is undefined, so absent rather than 0.
    assert "background_share_correct" not in res.metrics
    assert "occlusion.background_share_correct" not in res.metrics
    assert any("background share for correct is undefined" in w for w in res.warnings)


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


def test_probe_derives_the_same_cases_as_the_failures_probe_offers() -> None:
    import stresslab.probes.failures  # noqa: F401  (registers "failures")

    split = _split()
    settings = {"methods": ["saliency"], "n_high_confidence": 3, "n_uncertain": 3, "n_correct_per_class": 0}
    alone = ExplainProbe(min_error_confidence=0.5, **settings, **FAST).run(_ctx(split))  # type: ignore[arg-type]
    ctx = _ctx(split)
    ctx.results["failures"] = build_probe("failures", {"threshold": 0.5}).run(ctx)
    offered = ExplainProbe(**settings, **FAST).run(ctx)  # type: ignore[arg-type]
    assert [c["position"] for c in alone.data["cases"]] == [c["position"] for c in offered.data["cases"]]
    assert alone.data["settings"]["cases_from_failures_probe"] is False
    assert offered.data["settings"]["cases_from_failures_probe"] is True
    # One derivation: the offer is failure_cases of the predictions.
    assert ctx.results["failures"].offer == failure_cases(ctx.predictions, 0.5, 16)


def test_undefined_values_are_left_out_not_written_as_numbers() -> None:
    # Zero head: every logit is 0, so every map is constant (no rank correlation), every
    # curve is flat (every gain over random is zero: the signed-rank test is undefined) and
    # no map has positive mass (no background share).
    ctx = _ctx(_split(), zero_head=True)
    res = ExplainProbe(
        methods={"gradcam": {}, "saliency": {}, "occlusion": {"window": 4}},
        n_high_confidence=3,
        n_uncertain=1,
        min_error_confidence=0.0,
        **FAST,
    ).run(ctx)
    assert res.metrics["n_errors"] > 0 and res.metrics["n_correct"] > 0
    assert all(math.isfinite(v) for v in res.metrics.values())
    for m, label in (("gradcam", "Grad-CAM"), ("saliency", "saliency"), ("occlusion", "occlusion")):
        for key in (
            "randomization_spearman",
            "faithfulness_p",
            "background_share_errors",
            "background_share_correct",
        ):
            assert f"{m}.{key}" not in res.metrics, key
        assert res.metrics[f"{m}.faithful"] == 0.0 and res.metrics[f"{m}.sanity_pass"] == 0.0
        assert any(w.startswith(f"{label}: all") and "constant" in w for w in res.warnings)
        assert any(w.startswith(f"{label}: the faithfulness test is undefined") for w in res.warnings)
    for key in ("background_share_errors", "background_share_correct", "background_share_p"):
        assert key not in res.metrics
    quality, shares, per_class, further, concentration = res.tables
    # All-zero maps: no mass to localise, no norm to divide by; the model's top class never moves.
    for m in ("gradcam", "saliency", "occlusion"):
        for key in ("localisation", "localisation_rank", "max_sensitivity"):
            assert f"{m}.{key}" not in res.metrics, key
        assert res.metrics[f"{m}.road_morf"] == res.metrics[f"{m}.road_lerf"] == 1.0
    assert all(row[4:] == [None] * 3 for row in further.rows) and "A dash" in further.caption
    # Maps without attribution have no concentration: dashes and warnings, no metrics.
    assert all(row[1:7] == [None] * 6 for row in concentration.rows)
    assert not any("concentration" in k for k in res.metrics)
    assert any("map entropy with the prediction entropy is undefined" in w for w in res.warnings)
    # Gain 0 exactly, with no interval (no spread); the p-value and rank correlation undefined.
    assert all(row[5] == "+0.000" and row[6] is None and row[7] is None for row in quality.rows)
    assert all(
        row[8] == "fail: faithfulness test undefined, randomization test undefined" for row in quality.rows
    )
    assert "undefined" in quality.caption
    assert all(row[1] is None and row[2] is None for row in shares.rows)
    assert "A dash" in shares.caption and "A dash" in per_class.caption
    assert any("undefined: every image's gain over random maps is zero" in s for s in res.summary)
    assert all(c["gradcam"]["randomization_spearman"] is None for c in res.data["cases"])


def test_shipped_configs_and_quick_preset_use_the_methods_form() -> None:
    from pathlib import Path

    from stresslab.runs import config

    files = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    resolved = [config.resolve(f) for f in files] + [config.resolve(preset="quick")]
    built = [build_probe("explain", cfg.probes["explain"]) for cfg in resolved if "explain" in cfg.probes]
    assert len(built) >= 4  # a flat setting of earlier versions would raise in build_probe
    for probe in built:
        assert isinstance(probe, ExplainProbe)
        if "occlusion" not in probe.methods:  # configs/fashion_mnist_vit.yaml: cheaper methods only
            continue
        occlusion = probe.methods["occlusion"]
        assert isinstance(occlusion, Occlusion) and occlusion.sizes(28, 28) == (8, 2)
        assert occlusion.fill == "gray"


def test_further_test_settings_are_checked_naming_the_setting() -> None:
    with pytest.raises(
        ValueError, match=r"road_percentages must be numbers in \(0, 100\), got \[0.0, 50.0\]"
    ):
        ExplainProbe(road_percentages=[0, 50])
    with pytest.raises(ValueError, match="road_percentages must be a list"):
        ExplainProbe(road_percentages="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sensitivity_radius in"):
        ExplainProbe(sensitivity_radius=0.0)
    with pytest.raises(ValueError, match="road_images and sensitivity_images must be >= 0"):
        ExplainProbe(road_images=-1)
    assert ExplainProbe(road_percentages=[25, 75]).settings.road_percentages == (25.0, 75.0)


def test_max_sensitivity_sample_shrinks_with_the_cost_of_a_map() -> None:
    from stresslab.probes.explain.further_tests import sensitivity_cap

    assert sensitivity_cap(32, 1) == 32  # Grad-CAM, saliency, occlusion
    assert sensitivity_cap(32, 20) == 8  # SmoothGrad with 20 samples: 1/20, at least 8
    assert sensitivity_cap(64, 4) == 16
    assert sensitivity_cap(6, 20) == 6  # never more than the subset


def test_occlusion_counts_its_window_positions_as_passes() -> None:
    from stresslab.attributions import Saliency
    from stresslab.probes.explain.further_tests import passes_per_map

    assert passes_per_map(Occlusion(8, 2, "gray"), 28, 28) == 121  # 11 x 11 window positions
    assert passes_per_map(Saliency(), 28, 28) == 1
