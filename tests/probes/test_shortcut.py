"""shortcut: regions, pattern description, the transplant test, and the probe on tiny models
trained here on a planted pattern, on clean data and on a class-coloured background."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest, fisher_exact
from torch import nn

from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.metrics.proportions import fisher_greater, wilson_interval
from stresslab.models.base import Classifier
from stresslab.probes.base import PROBES, ProbeContext
from stresslab.probes.predictions import Predictions
from stresslab.probes.shortcut import (
    BACKGROUND,
    OBJECT,
    PATTERN,
    Box,
    ShortcutProbe,
    describe_region,
    paste_boxes,
    top_region,
)

torch.set_num_threads(1)
PLANT = Box(0, 13, 3, 3)  # top-right corner of 16x16 images


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (168, 200), (1, 1000)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    # by hand for 3 of 10: center (0.3 + z^2/20) / (1 + z^2/10)
    z = 1.959963984540054
    c = (0.3 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.3 * 0.7 / 10 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(3, 10) == pytest.approx((c - half, c + half))
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_fisher_greater_matches_scipy() -> None:
    assert fisher_greater(20, 100, 5, 100) == pytest.approx(
        fisher_exact([[20, 80], [5, 95]], alternative="greater").pvalue
    )
    assert fisher_greater(1, 10, 9, 10) > 0.99
    assert fisher_greater(0, 0, 3, 10) == 1.0


def test_top_region_finds_a_hot_square_and_caps_diffuse_maps() -> None:
    m = torch.full((16, 16), 0.001)
    m[4:7, 9:12] = 1.0
    m[12, 1] = 0.9  # a single hot pixel with less mass than the square
    assert top_region(m / m.sum(), fraction=0.04, max_fraction=0.2) == Box(4, 9, 3, 3)
    flat = torch.ones(16, 16)
    box = top_region(flat, fraction=0.1, max_fraction=0.1)  # rows 0-1 by raster order: 2x16 > 10%
    assert box == Box(0, 0, 5, 5)


def test_paste_boxes_copies_the_donor_patch_from_its_own_place() -> None:
    rec = torch.zeros(2, 1, 6, 6)
    don = torch.arange(72, dtype=torch.float32).view(2, 1, 6, 6)
    out = paste_boxes(rec, don, Box(1, 2, 2, 3), torch.tensor([0, 3]), torch.tensor([0, 1]))
    assert torch.equal(out[0, 0, 1:3, 2:5], don[0, 0, 0:2, 0:3])
    assert torch.equal(out[1, 0, 1:3, 2:5], don[1, 0, 3:5, 1:4])
    out[:, :, 1:3, 2:5] = 0
    assert not out.any() and not rec.any()  # nothing else changed, recipients untouched


def test_describe_region_tells_pattern_background_and_object() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(100, 1, 16, 16)
    x[:, :, 4:12, 4:12] = 0.3 + 0.7 * torch.rand(100, 1, 8, 8, generator=g)  # a varied object
    x[:80, :, 0:3, 13:16] = 1.0  # planted in 80% of the images
    others = torch.zeros(50, 1, 16, 16)
    kw = {"background": 0.0, "generator": g}
    planted = describe_region(x, others, PLANT, **kw)  # type: ignore[arg-type]
    assert planted.kind == PATTERN and planted.pattern_share == pytest.approx(0.8)
    assert planted.others_pattern_share == 0.0
    assert planted.std_ratio > 1  # 80% presence: a per-pixel variance would not call it constant
    assert describe_region(x, others, Box(13, 0, 3, 3), **kw).kind == BACKGROUND  # type: ignore[arg-type]
    assert describe_region(x, others, Box(6, 6, 3, 3), **kw).kind == OBJECT  # type: ignore[arg-type]


class Net(Classifier):
    cam_layer = "body.2"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Linear(12, info.num_classes)


class Mlp(Classifier):
    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Flatten()
        self.head = nn.Linear(info.channels * info.height * info.width, info.num_classes)


def _bars(n: int, g: torch.Generator, *, planted: bool, tinted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a horizontal bar, 1: vertical, 2: diagonal, at random places and brightness.
    ``planted``: 80% of class 0 carry a bright square in the top-right corner (PLANT).
    ``tinted``: class 0's background is a mid gray, the others' dark."""
    y = torch.arange(n) % 3
    x = torch.zeros(n, 1, 16, 16)
    r = torch.randint(2, 10, (n,), generator=g)
    c = torch.randint(2, 10, (n,), generator=g)
    v = 0.5 + 0.5 * torch.rand(n, generator=g)
    for i in range(n):
        ri, ci = int(r[i]), int(c[i])
        if y[i] == 0:
            x[i, 0, ri, ci : ci + 5] = v[i]
        elif y[i] == 1:
            x[i, 0, ri : ri + 5, ci] = v[i]
        else:
            for d in range(4):
                x[i, 0, ri + d, ci + d] = v[i]
    if planted:
        has = (y == 0) & (torch.rand(n, generator=g) < 0.8)
        x[has, :, PLANT.rows, PLANT.cols] = 1.0
    if tinted:
        x = torch.where(x > 0, x, torch.where(y[:, None, None, None] == 0, 0.35, 0.05))
    return (x * 255).round().to(torch.uint8), y


def _context(model_cls: type[Classifier], *, planted: bool = False, tinted: bool = False) -> ProbeContext:
    g = torch.Generator().manual_seed(0)
    info = DatasetInfo(
        "bars", ("hbar", "vbar", "diag"), 1, 16, 16, (0.05,), (0.2,), background=None if tinted else 0.0
    )
    tx, ty = _bars(300, g, planted=planted, tinted=tinted)
    sx, sy = _bars(240, g, planted=planted, tinted=tinted)
    split = Split(info, tx, ty, tx[:0], ty[:0], sx, sy, test_index=torch.arange(1000, 1240))
    torch.manual_seed(0)
    model = model_cls(info)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    xf = to_float(tx)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(xf), ty).backward()
        opt.step()
    model.eval()
    p = Predictions.compute(model, sx, sy, split.test_index)
    v = Predictions.compute(model, tx[:0], ty[:0], split.val_index)
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=256,
        predictions=p,
        val_predictions=v,
    )


FAST = {"max_images": 240, "n_transplant": 120, "max_kind_images": 200}


def test_transplant_flags_a_planted_pattern() -> None:
    ctx = _context(Net, planted=True)
    grads = [p.grad.clone() for p in ctx.model.parameters()]  # left over from training
    res = ShortcutProbe(**FAST).run(ctx)
    assert res.metrics["n_shortcuts"] == 1, res.data["regions"]
    (found,) = res.data["shortcuts"]
    assert found["class"] == 0 and found["kind"]["kind"] == PATTERN
    assert Box(**found["box"]).iou(PLANT) > 0.3
    assert found["flip"]["rate"] >= 5 * found["control"]["rate"]
    assert found["flip"]["ci_low"] <= found["flip"]["rate"] <= found["flip"]["ci_high"]
    assert all(1000 <= e["recipient_index"] < 1240 for e in found["examples"])  # official test indices
    assert any(w.startswith("shortcut: hbar") for w in res.warnings)
    assert res.metrics["transplant_images_per_s"] > 0
    assert {"class_maps_test", "class_maps_train", "shortcut_1"} <= set(res.figures)
    assert PROBES.get("shortcut") is ShortcutProbe
    assert not ctx.model.training
    assert all(torch.equal(p.grad, g) for p, g in zip(ctx.model.parameters(), grads, strict=True))


def test_transplant_does_not_flag_clean_data() -> None:
    res = ShortcutProbe(**FAST).run(_context(Net))
    assert res.metrics["n_shortcuts"] == 0, res.data["regions"]
    assert res.metrics["n_regions_tested"] >= 4
    assert not [w for w in res.warnings if w.startswith("shortcut")]
    assert "n_background_reliance" not in res.metrics  # plain background: left out, not zero
    assert any("background test was left out" in s for s in res.summary)


def test_background_reliance_is_found_where_the_background_is_not_plain() -> None:
    res = ShortcutProbe(sources=["test"], **FAST).run(_context(Net, tinted=True))
    flagged = [b for b in res.data["background"] if b["reliance"]]
    assert [b["class"] for b in flagged] == [0], res.data["background"]
    assert res.metrics["n_background_reliance"] == 1
    assert any(w.startswith("background reliance: hbar") for w in res.warnings)


def test_a_model_without_convolutions_falls_back_to_occlusion_with_a_warning() -> None:
    res = ShortcutProbe(**{**FAST, "method": "gradcam"}).run(_context(Mlp))
    assert any("Grad-CAM cannot run" in w and "occlusion" in w for w in res.warnings)
    assert res.data["settings"]["method"] == "occlusion"
    # Asked to choose, it finds no layer to explain and says so in the summary.
    auto = ShortcutProbe(**FAST).run(_context(Mlp))
    assert auto.data["settings"]["method"] == "occlusion"
    assert any("regions from occlusion alone" in s for s in auto.summary)
    assert res.metrics["n_regions_tested"] > 0
    assert all(math.isfinite(v) for v in res.metrics.values())


class _CornerScore(nn.Module):
    """Logit of class 0: the sum of the top-left 4x4 pixels; class 1: a constant. A coarse
    layer (stride-4 pooling) stands in for a CNN's last conv stage."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.pool(x)  # (N, 1, 4, 4): 4x4-pixel cells
        return torch.stack([16 * coarse[:, 0, 0, 0], torch.full_like(coarse[:, 0, 0, 0], 4.0)], dim=1)


def test_occlusion_refines_a_box_misplaced_by_a_coarse_map() -> None:
    from stresslab.attributions import Occlusion
    from stresslab.probes.shortcut.find import Found, layer_resolution, refine

    model = _CornerScore()
    assert layer_resolution(model, "pool", torch.zeros(1, 16, 16)) == (4, 4)
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 0:4, 0:4] = 1.0
    coarse = Found(Box(0, 4, 4, 4), torch.full((16, 16), 1 / 256), torch.zeros(8), False, 8)  # one cell off
    found = refine(
        coarse, Occlusion(2, 1, "zero"), model, x, 0, top_fraction=0.06, max_fraction=0.2, batch_size=64
    )
    assert found.refined and found.box.iou(Box(0, 0, 4, 4)) >= 0.5, found.box


def test_auto_takes_regions_from_the_explain_probes_most_faithful_method() -> None:
    from types import SimpleNamespace

    from stresslab.probes.base import ProbeResult
    from stresslab.probes.shortcut.probe import ShortcutProbe

    def ctx_with(ranking: list[str], faithful: set[str]) -> Any:
        res = ProbeResult()
        res.data["ranking"] = ranking
        res.data["settings"] = {"method_settings": {"gradcam": {"layer": "body.block3"}}}
        res.metrics.update({f"{n}.faithful": float(n in faithful) for n in ranking})
        return SimpleNamespace(results={"explain": res})

    probe = ShortcutProbe()
    notes: list[str] = []
    assert probe._auto(ctx_with(["gradcam", "occlusion"], {"gradcam"}), notes) == ("gradcam", "body.block3")
    both = {"occlusion", "gradcam"}
    assert probe._auto(ctx_with(["occlusion", "gradcam"], both), notes) == ("occlusion", "")
    assert probe._auto(ctx_with(["saliency", "gradcam"], set()), notes) == ("occlusion", "")
    assert "no method beat random" in notes[-1]


def test_search_finds_a_region_far_from_a_misplaced_coarse_box() -> None:
    from stresslab.attributions import Occlusion
    from stresslab.probes.shortcut.find import Found, search

    model = _CornerScore()
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 0:4, 0:4] = 1.0
    far = Found(Box(12, 12, 4, 4), torch.full((16, 16), 1 / 256), torch.zeros(8), False, 8)  # no drop near it
    kw: dict[str, Any] = {"top_fraction": 0.06, "max_fraction": 0.2, "batch_size": 64}
    occ = Occlusion(2, 1, "zero")
    (alone,) = search(far, occ, model, x, 0, n_regions=1, **kw)
    assert alone.box == far.box  # refining near the coarse box alone never reaches the corner
    first, second = search(far, occ, model, x, 0, n_regions=3, **kw)
    assert first.box == far.box and second.refined
    assert second.box.iou(Box(0, 0, 4, 4)) >= 0.5, second.box


def test_pattern_core_narrows_a_blurred_box_to_the_repeated_pixels() -> None:
    from stresslab.probes.shortcut.pattern import pattern_core

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(50, 1, 16, 16)
    x[:, :, 2:14, 9:16] = 0.2 + 0.8 * torch.rand(50, 1, 12, 7, generator=g)  # a varied object
    x[:40, :, 0:3, 13:16] = 1.0  # planted on 80%, touching the object
    blurred = Box(0, 11, 6, 5)  # rows 0-5, columns 11-15: the square and object pixels
    assert describe_region(x, x[:0], blurred, background=0.0, generator=g).kind != PATTERN
    core = pattern_core(x, blurred, background=0.0)
    assert core == Box(0, 13, 3, 3)
    assert describe_region(x, x[:0], core, background=0.0, generator=g).kind == PATTERN
    assert pattern_core(x, Box(6, 10, 3, 3), background=0.0) is None  # the object does not repeat


def test_a_box_cutting_through_a_square_no_other_class_has_is_narrowed_to_its_core() -> None:
    """Seen on a planted Bag square: occlusion gave rows 2-7, columns 0-5, half the square
    and varying object (58% of Bags repeat it, no other class does); its core, the square
    (80%, no other class), is as far apart and repeated more: the core is tested."""
    from stresslab.probes.shortcut.pattern import RegionKind, sharper

    def kind(share: float, others: float) -> RegionKind:
        return RegionKind(PATTERN, share, 0.1, others, 0.2, 0.5)

    box, core = kind(0.58, 0.0), kind(0.80, 0.0)
    assert sharper(core, box) and not sharper(box, core)
    # Further apart wins whatever the share: a plain border beside a square.
    assert sharper(kind(0.7, 0.0), kind(0.9, 0.3)) and not sharper(kind(0.9, 0.3), kind(0.7, 0.0))
    assert sharper(kind(0.6, 0.1), kind(0.9, 0.3))  # 6x apart against 3x


def test_pattern_core_keeps_a_class_square_and_drops_a_border_every_class_shares() -> None:
    from stresslab.probes.shortcut.pattern import pattern_core

    g = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:  # a varied object inside a black border of 2 pixels
        x = torch.zeros(n, 1, 16, 16)
        x[:, :, 2:14, 2:14] = 0.2 + 0.8 * torch.rand(n, 1, 12, 12, generator=g)
        return x

    own, others = images(50), images(200)
    own[:40, :, 0:3, 0:3] = 1.0  # a white square on 80% of the class, in the border
    near = Box(0, 1, 3, 8)  # the square's right part and black border beside it
    # Without the contrast, the border that every class shares joins the square's core.
    assert pattern_core(own, near, background=None) == Box(0, 0, 5, 13)
    assert pattern_core(own, near, background=None, other_x=others) == Box(0, 0, 3, 3)
    assert pattern_core(own, Box(0, 6, 2, 6), background=None, other_x=others) is None
    # Colour, size and place are free: a gray 2x5 bar at the bottom edge.
    own[:40, :, 14:16, 9:14] = 0.5
    assert pattern_core(own, Box(13, 8, 3, 6), background=None, other_x=others) == Box(14, 9, 2, 5)
    # With a declared background the contrast changes nothing for a class-specific pattern.
    assert pattern_core(own, near, background=0.0, other_x=others) == Box(0, 0, 3, 3)
    rest = describe_region(own, others, Box(0, 6, 2, 6), background=None, generator=g)
    assert rest.kind != PATTERN and rest.others_pattern_share == 1.0  # the border: no shortcut
    assert describe_region(own, others, Box(0, 0, 3, 3), background=None, generator=g).kind == PATTERN


class _Detectors(nn.Module):
    """Hand-set 5x5 filters, each summing to 0 (a uniform patch, such as occlusion's fill,
    answers nothing): a horizontal, a vertical and a diagonal line, and a bright 3x3 square
    whose answer is kept only at the top-right corner (rows 0-3, columns 12-15)."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.zeros(4, 1, 5, 5)
        k[0, 0, 2, :], k[0, 0, 1, :], k[0, 0, 3, :] = 1.0, -0.5, -0.5
        k[1] = k[0].transpose(1, 2)
        k[2, 0] = torch.eye(5) * 1.25 - 0.25
        k[3, 0] = -1 / 16
        k[3, 0, 1:4, 1:4] = 1 / 9
        self.conv = nn.Conv2d(1, 4, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(k)
            self.conv.bias.copy_(torch.tensor([-1.0, -1.0, -1.0, -0.5]))
        mask = torch.ones(4, 16, 16)
        mask[3] = 0
        mask[3, 0:4, 12:16] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)) * self.mask


class _Planted(Classifier):
    """Class k (0: horizontal, 1: vertical, 2: diagonal line) from its line filter; with
    ``corner`` > 0, a bright square at the top-right corner adds to class 0's logit: a
    shortcut by construction. Grad-CAM's layer is 4x4 (cells of 4x4 pixels), as coarse as
    a CNN's last stage."""

    cam_layer = "body.pool"

    def __init__(self, info: DatasetInfo, corner: float) -> None:
        super().__init__(info.mean, info.std)
        self.body = nn.Sequential()
        self.body.add_module("detect", _Detectors())
        self.body.add_module("pool", nn.AvgPool2d(4))
        self.body.add_module("max", nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[4, 0, 0, 4 * corner], [0, 4, 0, 0], [0, 0, 4, 0]]))
            self.head.bias.zero_()


def _lines(n: int, g: torch.Generator, planted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lines near the center (jittered by a pixel) of brightness 0.4-1; ``planted``: 80% of
    class 0 carry a white 3x3 square at rows 0-2, columns 13-15 (PLANT)."""
    y = torch.arange(n) % 3
    x = torch.zeros(n, 1, 16, 16)
    j = torch.randint(-1, 2, (n, 2), generator=g)
    v = 0.4 + 0.6 * torch.rand(n, generator=g)
    for i in range(n):
        a, b = int(j[i, 0]), int(j[i, 1])
        if y[i] == 0:
            x[i, 0, 8 + a, 4 + b : 12 + b] = v[i]
        elif y[i] == 1:
            x[i, 0, 4 + a : 12 + a, 8 + b] = v[i]
        else:
            for d in range(7):
                x[i, 0, 4 + a + d, 4 + b + d] = v[i]
    if planted:
        has = (y == 0) & (torch.rand(n, generator=g) < 0.8)
        x[has, :, PLANT.rows, PLANT.cols] = 1.0
    return (x * 255).round().to(torch.uint8), y


def _planted_context(corner: float) -> ProbeContext:
    g = torch.Generator().manual_seed(0)
    info = DatasetInfo("lines", ("h", "v", "d"), 1, 16, 16, (0.0,), (1.0,), background=0.0)
    tx, ty = _lines(300, g, planted=True)
    sx, sy = _lines(240, g, planted=False)  # the test set has no square
    split = Split(info, tx, ty, tx[:0], ty[:0], sx, sy, test_index=torch.arange(1000, 1240))
    model = _Planted(info, corner).eval()
    p = Predictions.compute(model, sx, sy, split.test_index)
    assert bool(p.correct.all())  # the lines alone classify every test image
    v = Predictions.compute(model, tx[:0], ty[:0], split.val_index)
    return ProbeContext(
        model=model, split=split, device=torch.device("cpu"), seed=0, batch_size=256, predictions=p,
        val_predictions=v,
    )  # fmt: skip


def test_a_hand_built_shortcut_is_flagged_at_its_place_and_a_model_without_one_is_not() -> None:
    res = ShortcutProbe(sources=["train"], **FAST).run(_planted_context(corner=16.0))
    (found,) = res.data["shortcuts"]
    assert found["class"] == 0 and found["source"] == "train" and found["kind"]["kind"] == PATTERN
    assert Box(**found["box"]) == PLANT, found["box"]  # the Grad-CAM cell, narrowed to the square
    assert found["flip"]["rate"] >= 0.5 and found["flip"]["rate"] >= 5 * found["control"]["rate"]
    # the same data, with the corner unused by the model
    clean = ShortcutProbe(sources=["train"], **FAST).run(_planted_context(corner=0.0))
    assert clean.metrics["n_shortcuts"] == 0, clean.data["regions"]
    assert not any(r.get("shortcut") for r in clean.data["regions"])


def test_a_pattern_box_is_narrowed_only_to_a_core_that_sets_the_class_further_apart() -> None:
    from stresslab.probes.shortcut.pattern import RegionKind, times_apart

    def kind(share: float, others: float) -> RegionKind:
        return RegionKind(PATTERN, share, 0.1, others, math.nan, 1.0)

    border_patch, square = kind(0.79, 0.37), kind(0.80, 0.0)  # bench_diagnosis's Bag, measured
    assert times_apart(border_patch) == pytest.approx(0.79 / 0.37) and times_apart(square) == math.inf
    assert times_apart(square) > times_apart(border_patch)  # narrowed to the square
    assert not times_apart(square) > times_apart(kind(0.79, 0.0))  # a box no other class matches stays
    assert times_apart(kind(0.6, math.nan)) == math.inf  # others not seen: no contrast to gain


@pytest.mark.parametrize(
    ("side", "window", "stride"), [(8, 4, 2), (16, 4, 2), (28, 4, 2), (64, 9, 5), (224, 32, 16)]
)
def test_the_refining_window_keeps_its_pixels_on_small_images_and_its_share_on_large(
    side: int, window: int, stride: int
) -> None:
    from stresslab.attributions import Occlusion
    from stresslab.probes.shortcut.probe import refine_stride, refine_window

    assert (refine_window(side), refine_stride(side)) == (window, stride)
    # The positions per image stop growing above small images: 169 on 28 px, 169 on 224 px.
    w, s = refine_window(side), refine_stride(side)
    assert Occlusion(w, s, "zero").positions(side, side) <= 15 * 15
