"""The ``explain`` probe: Grad-CAM, saliency, SmoothGrad/IG and occlusion on the failures,
with each method's faithfulness, sanity and background share measured."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.errors import ConfigError
from stresslab.models.base import default_cam_layer
from stresslab.probes.base import Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.probes.explain.base import ATTRIBUTIONS, Attribution, fill_value
from stresslab.probes.explain.cases import CORRECT, HIGH_CONFIDENCE, UNCERTAIN, Case, select_cases
from stresslab.probes.explain.figures import MapColumn, case_rows_figure, curves_figure
from stresslab.probes.explain.gradcam import GradCam
from stresslab.probes.explain.integrated_gradients import IntegratedGradients
from stresslab.probes.explain.occlusion import Occlusion
from stresslab.probes.explain.quality import (
    background_mask,
    background_share,
    curve_auc,
    deletion_insertion_curves,
    randomization_test,
)
from stresslab.probes.explain.saliency import Saliency
from stresslab.probes.explain.smoothgrad import SmoothGrad

log = logging.getLogger(__name__)


def _mean(values: Tensor) -> float:
    """Mean of the finite entries of ``values``, NaN when there are none."""
    v = values[torch.isfinite(values)]
    return float(v.double().mean()) if len(v) else math.nan


def _fmt(value: float, pct: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.0f}%" if pct else f"{value:.3f}"


def _paired_gain_test(q: _MethodQuality, random_q: _MethodQuality) -> tuple[int, float]:
    """Per image, gain = (random - method) deletion AUC + (method - random) insertion AUC.

    Returns how many images have a positive gain and the one-sided Wilcoxon signed-rank
    p-value that the gain is positive (1.0 when every gain is zero). A verdict from the
    mean AUCs alone would call a difference of 0.01 on a handful of images "faithful".
    """
    from scipy.stats import wilcoxon

    gain = (random_q.deletion_auc - q.deletion_auc) + (q.insertion_auc - random_q.insertion_auc)
    gain = gain[torch.isfinite(gain)]
    wins = int((gain > 0).sum())
    if not bool((gain != 0).any()):
        return wins, 1.0
    p = float(wilcoxon(gain.double().numpy(), alternative="greater").pvalue)
    return wins, p if math.isfinite(p) else 1.0


def _difference_p(a: Tensor, b: Tensor) -> float:
    """Two-sided Mann-Whitney U p-value that samples ``a`` and ``b`` differ (1.0 if undefined)."""
    from scipy.stats import mannwhitneyu

    a, b = a[torch.isfinite(a)], b[torch.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return 1.0
    p = float(mannwhitneyu(a.double().numpy(), b.double().numpy(), alternative="two-sided").pvalue)
    return p if math.isfinite(p) else 1.0


@dataclass
class _MethodQuality:
    deletion: Tensor  # (N, S+1)
    insertion: Tensor
    spearman: Tensor = field(default_factory=lambda: torch.empty(0))  # (N,)
    bg_share: Tensor = field(default_factory=lambda: torch.empty(0))  # (N,)

    @property
    def deletion_auc(self) -> Tensor:
        return curve_auc(self.deletion)

    @property
    def insertion_auc(self) -> Tensor:
        return curve_auc(self.insertion)


@register_probe("explain")
class ExplainProbe(Probe):
    """Explain the failures found by ``failures`` and measure how far each map can be trusted.

    Settings: how many high-confidence errors (``n_high_confidence``), uncertain
    predictions (``n_uncertain``) and correct predictions per class (``n_correct_per_class``)
    to explain; errors count as high-confidence from ``min_error_confidence`` when the
    ``failures`` probe did not run. ``methods`` from ``gradcam``, ``saliency``,
    ``smoothgrad``, ``integrated_gradients``, ``occlusion``; Grad-CAM explains ``layer``
    (the model's ``cam_layer`` when empty) for the predicted and the true class. Occlusion
    uses an ``occlusion_window`` square patch every ``occlusion_stride`` pixels filled with
    ``occlusion_fill`` (gray / mean / zero / a number). Deletion and insertion curves
    (``curve_steps`` steps) replace pixels by ``curve_fill`` and are compared with
    ``random_maps`` random orderings; a method counts as faithful when its per-image gain
    over random is positive by a one-sided Wilcoxon signed-rank test at
    ``faithfulness_alpha``. The randomization test re-initializes the weights of
    a copy of the model (``randomization``: ``full`` = all layers, ``top`` = the last
    layer only); a method fails when the mean rank correlation between its maps on the
    trained and the randomized model is at least ``randomization_threshold``. Background
    pixels are those within ``background_tolerance`` of the dataset's background value.
    """

    order = 30

    requires = ("failures",)

    def __init__(
        self,
        *,
        n_high_confidence: int = 8,
        n_uncertain: int = 4,
        n_correct_per_class: int = 1,
        min_error_confidence: float = 0.9,
        methods: tuple[str, ...] | list[str] = ("gradcam", "saliency", "smoothgrad", "occlusion"),
        layer: str = "",
        occlusion_window: int = 8,
        occlusion_stride: int = 2,
        occlusion_fill: str | float = "gray",
        smoothgrad_samples: int = 20,
        smoothgrad_noise: float = 0.15,
        ig_steps: int = 32,
        ig_baseline: str | float = "zero",
        curve_steps: int = 20,
        curve_fill: str | float = "zero",
        random_maps: int = 2,
        randomization: str = "full",
        randomization_threshold: float = 0.5,
        faithfulness_alpha: float = 0.05,
        background_tolerance: float = 0.05,
        cases_per_figure: int = 6,
    ) -> None:
        for name in methods:
            if name not in ATTRIBUTIONS:
                raise ConfigError(
                    f"probes.explain: unknown method {name!r}; choose from {ATTRIBUTIONS.names()}"
                )
        if not methods:
            raise ConfigError("probes.explain: methods must name at least one method")
        if min(n_high_confidence, n_uncertain, n_correct_per_class) < 0:
            raise ValueError("case counts must be >= 0")
        if curve_steps < 2 or random_maps < 1 or cases_per_figure < 1:
            raise ValueError("curve_steps >= 2, random_maps >= 1 and cases_per_figure >= 1 are required")
        if randomization not in ("full", "top"):
            raise ValueError("randomization must be 'full' or 'top'")
        self.n_high_confidence = n_high_confidence
        self.n_uncertain = n_uncertain
        self.n_correct_per_class = n_correct_per_class
        self.min_error_confidence = min_error_confidence
        self.methods = tuple(dict.fromkeys(methods))
        self.layer = layer
        self.occlusion_window = occlusion_window
        self.occlusion_stride = occlusion_stride
        self.occlusion_fill = occlusion_fill
        self.smoothgrad_samples = smoothgrad_samples
        self.smoothgrad_noise = smoothgrad_noise
        self.ig_steps = ig_steps
        self.ig_baseline = ig_baseline
        self.curve_steps = curve_steps
        self.curve_fill = curve_fill
        self.random_maps = random_maps
        self.randomization = randomization
        self.randomization_threshold = randomization_threshold
        if not 0.0 < faithfulness_alpha < 1.0:
            raise ValueError(f"faithfulness_alpha must be in (0, 1), got {faithfulness_alpha}")
        self.faithfulness_alpha = faithfulness_alpha
        self.background_tolerance = background_tolerance
        self.cases_per_figure = cases_per_figure

    def _method(self, name: str, ctx: ProbeContext, warnings: list[str]) -> Attribution:
        info = ctx.info
        if name == "gradcam":
            return GradCam(self.layer or None)
        if name == "saliency":
            return Saliency()
        if name == "smoothgrad":
            return SmoothGrad(self.smoothgrad_samples, self.smoothgrad_noise)
        if name == "integrated_gradients":
            return IntegratedGradients(self.ig_steps, self.ig_baseline, info.mean)
        if name == "occlusion":
            window, stride = self.occlusion_window, self.occlusion_stride
            if window > min(info.height, info.width):
                window = max(1, min(info.height, info.width) // 4)
                stride = min(stride, window)
                warnings.append(
                    f"occlusion window {self.occlusion_window} is larger than the {info.height}x{info.width} "
                    f"images; used {window}x{window} with stride {stride}"
                )
            return Occlusion(window, stride, self.occlusion_fill, info.mean)
        return ATTRIBUTIONS.get(name)()

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        cases, from_failures = select_cases(
            ctx,
            n_high_confidence=self.n_high_confidence,
            n_uncertain=self.n_uncertain,
            n_correct_per_class=self.n_correct_per_class,
            min_confidence=self.min_error_confidence,
        )
        if not from_failures:
            res.warnings.append(
                "the failures probe did not run; cases were picked from the predictions "
                f"(errors with confidence >= {self.min_error_confidence}, highest entropy)"
            )
        n_err = sum(c.is_error for c in cases)
        res.metrics.update({"n_cases": float(len(cases)), "n_errors": float(n_err)})
        res.metrics["n_correct"] = float(len(cases) - n_err)
        failures = ctx.results.get("failures")
        threshold = failures.data.get("threshold", self.min_error_confidence) if failures else None
        if threshold is None:
            threshold = self.min_error_confidence
        if not any(c.kind == HIGH_CONFIDENCE for c in cases):
            res.warnings.append(
                f"no errors with confidence >= {threshold}; no high-confidence errors to explain"
            )
        if not cases:
            res.summary.append("No test images to explain.")
            return res

        info, bs = ctx.info, ctx.batch_size
        names = [
            info.class_names[i] if i < len(info.class_names) else str(i) for i in range(info.num_classes)
        ]
        positions = torch.tensor([c.position for c in cases])
        x = to_float(ctx.split.test_x[positions])
        pred = torch.tensor([c.pred for c in cases])
        true = torch.tensor([c.true for c in cases])
        methods = {name: self._method(name, ctx, res.warnings) for name in self.methods}
        if "integrated_gradients" in methods and info.background is not None:
            base = fill_value(self.ig_baseline, info.channels, info.mean)
            if bool(((base - info.background).abs() <= self.background_tolerance).all()):
                res.warnings.append(
                    "Integrated Gradients uses a baseline equal to the background, so it gives the "
                    "background zero attribution by construction; its background share says nothing"
                )
        total = 3 * len(methods) + 2

        maps: dict[str, Tensor] = {}
        extra: dict[str, Tensor] = {}
        occ_grid: Tensor | None = None
        tracker: Any = ctx.track("explain", total)
        with tracker as advance:
            for name, method in methods.items():
                if isinstance(method, Occlusion):
                    occ = method.maps(ctx.model, x, torch.stack([pred, true], dim=1), batch_size=max(bs, 256))
                    maps[name] = occ.drop[:, 0]
                    extra["occlusion_true_conf"] = occ.confidence[:, 1]
                    occ_grid = occ.grid
                else:
                    maps[name] = method.attribute(
                        ctx.model, x, pred, batch_size=bs, generator=ctx.generator(11)
                    )
                advance(1)
            if "gradcam" in methods:
                extra["gradcam_true"] = methods["gradcam"].attribute(ctx.model, x, true, batch_size=bs)
            advance(1)

            quality, random_q = self._faithfulness(ctx, x, pred, maps, advance)
            self._sanity(ctx, x, pred, methods, maps, quality, advance)
            if info.background is not None:
                mask = background_mask(x, info.background, self.background_tolerance)
                for name in methods:
                    quality[name].bg_share = background_share(maps[name], mask)
                area = mask.flatten(1).float().mean(dim=1)
            else:
                area = torch.empty(0)
            advance(1)

        self._report(res, ctx, cases, names, x, methods, maps, extra, quality, random_q, area)
        res.data["cases"] = self._case_records(cases, names, methods, quality, random_q, occ_grid)
        res.data["settings"] = {
            "methods": list(self.methods),
            "layer": (self.layer or default_cam_layer(ctx.model)) if "gradcam" in methods else None,
            "occlusion": {
                "window": self.occlusion_window,
                "stride": self.occlusion_stride,
                "fill": self.occlusion_fill,
            },
            "curve_steps": self.curve_steps,
            "curve_fill": self.curve_fill,
            "randomization": self.randomization,
            "cases_from_failures_probe": from_failures,
        }
        return res

    def _faithfulness(
        self, ctx: ProbeContext, x: Tensor, pred: Tensor, maps: dict[str, Tensor], advance: Any
    ) -> tuple[dict[str, _MethodQuality], _MethodQuality]:
        baseline = fill_value(self.curve_fill, x.shape[1], ctx.info.mean)
        kw = {"steps": self.curve_steps, "batch_size": max(ctx.batch_size, 256)}
        quality: dict[str, _MethodQuality] = {}
        for name, m in maps.items():
            d, i = deletion_insertion_curves(ctx.model, x, m, pred, baseline, **kw)
            quality[name] = _MethodQuality(d, i)
            advance(1)
        g = ctx.generator(13)
        dels, ins = [], []
        for _ in range(self.random_maps):
            rand = torch.rand(x.shape[0], x.shape[2], x.shape[3], generator=g)
            d, i = deletion_insertion_curves(ctx.model, x, rand, pred, baseline, **kw)
            dels.append(d)
            ins.append(i)
        return quality, _MethodQuality(torch.stack(dels).mean(0), torch.stack(ins).mean(0))

    def _sanity(
        self,
        ctx: ProbeContext,
        x: Tensor,
        pred: Tensor,
        methods: dict[str, Attribution],
        maps: dict[str, Tensor],
        quality: dict[str, _MethodQuality],
        advance: Any,
    ) -> None:
        for name, method in methods.items():
            result = randomization_test(
                method,
                ctx.model,
                x,
                pred,
                maps[name],
                seed=ctx.seed * 1_000_003 + 17,
                mode=self.randomization,
                threshold=self.randomization_threshold,
                batch_size=max(ctx.batch_size, 256) if isinstance(method, Occlusion) else ctx.batch_size,
                generator=ctx.generator(11),
            )
            quality[name].spearman = result.spearman
            advance(1)

    def _passes_sanity(self, q: _MethodQuality) -> bool:
        rho = _mean(q.spearman)
        return math.isfinite(rho) and rho < self.randomization_threshold

    def _report(
        self,
        res: ProbeResult,
        ctx: ProbeContext,
        cases: list[Case],
        names: list[str],
        x: Tensor,
        methods: dict[str, Attribution],
        maps: dict[str, Tensor],
        extra: dict[str, Tensor],
        quality: dict[str, _MethodQuality],
        random_q: _MethodQuality,
        area: Tensor,
    ) -> None:
        kinds = [c.kind for c in cases]
        res.summary.append(
            f"Explained {len(cases)} test images: {kinds.count(HIGH_CONFIDENCE)} high-confidence errors, "
            f"{kinds.count(UNCERTAIN)} uncertain predictions and {kinds.count(CORRECT)} correct predictions."
        )
        r_del, r_ins = _mean(random_q.deletion_auc), _mean(random_q.insertion_auc)
        res.metrics["random.deletion_auc"] = r_del
        res.metrics["random.insertion_auc"] = r_ins
        is_err = torch.tensor([c.is_error for c in cases])
        rows: list[list[Any]] = []
        bg_rows: list[list[Any]] = []
        for name, method in methods.items():
            q = quality[name]
            d, i, rho = _mean(q.deletion_auc), _mean(q.insertion_auc), _mean(q.spearman)
            wins, p_value = _paired_gain_test(q, random_q)
            faithful = p_value < self.faithfulness_alpha
            sane = self._passes_sanity(q)
            n_const = int((~torch.isfinite(q.spearman)).sum())
            if n_const:
                res.warnings.append(
                    f"{method.label}: {n_const} of {len(cases)} maps are constant on the trained or the "
                    "randomized model; their rank correlation is undefined and left out"
                )
            res.metrics[f"{name}.deletion_auc"] = d
            res.metrics[f"{name}.insertion_auc"] = i
            res.metrics[f"{name}.randomization_spearman"] = rho if math.isfinite(rho) else 1.0
            res.metrics[f"{name}.faithful"] = float(faithful)
            res.metrics[f"{name}.faithfulness_p"] = p_value
            res.metrics[f"{name}.faithfulness_wins"] = wins
            res.metrics[f"{name}.sanity_pass"] = float(sane)
            verdict = (
                "pass"
                if faithful and sane
                else "fail: "
                + ", ".join(
                    w for w, ok in (("not faithful", faithful), ("fails randomization", sane)) if not ok
                )
            )
            rows.append([method.label, _fmt(d), _fmt(r_del), _fmt(i), _fmt(r_ins), _fmt(rho), verdict])
            better = "more" if faithful else "not shown to be more"
            res.summary.append(
                f"{method.label} maps are {better} faithful than random: they beat random maps on "
                f"{wins} of {len(cases)} images (one-sided Wilcoxon signed-rank p = {p_value:.3g}; "
                f"deletion AUC {d:.2f} vs {r_del:.2f}, insertion AUC {i:.2f} vs {r_ins:.2f}; "
                "lower deletion and higher insertion are better)."
            )
            if not sane:
                res.warnings.append(
                    f"{method.label} fails the randomization test: its maps barely change when the model's "
                    f"weights are randomized (rank correlation {_fmt(rho)} >= "
                    f"{self.randomization_threshold}); "
                    "they show the image more than the model"
                )
            if len(q.bg_share):
                e, c = _mean(q.bg_share[is_err]), _mean(q.bg_share[~is_err])
                res.metrics[f"{name}.background_share_errors"] = e if math.isfinite(e) else 0.0
                res.metrics[f"{name}.background_share_correct"] = c if math.isfinite(c) else 0.0
                bg_rows.append([method.label, _fmt(e, True), _fmt(c, True)])
        res.tables.append(
            Table(
                title="Quality of each explanation method",
                columns=[
                    "method",
                    "deletion AUC",
                    "random deletion AUC",
                    "insertion AUC",
                    "random insertion AUC",
                    "randomization rank corr.",
                    "verdict",
                ],
                rows=rows,
                caption=(
                    "Deletion/insertion AUC: mean probability of the predicted class as the most-attributed "
                    f"pixels are replaced by {self.curve_fill!s} (deletion) or restored onto it (insertion) "
                    "(Petsiuk et al., 2018); random = random pixel order. Rank correlation: Spearman between "
                    f"maps of the trained model and of a copy with re-initialized weights "
                    f"({self.randomization}; "
                    f"Adebayo et al., 2018); >= {self.randomization_threshold} fails."
                ),
            )
        )
        self._background(res, cases, names, methods, quality, area, is_err, bg_rows)
        self._figures(res, cases, names, x, methods, maps, extra, quality, random_q)

    def _background(
        self,
        res: ProbeResult,
        cases: list[Case],
        names: list[str],
        methods: dict[str, Attribution],
        quality: dict[str, _MethodQuality],
        area: Tensor,
        is_err: Tensor,
        bg_rows: list[list[Any]],
    ) -> None:
        if not len(area):
            return
        head = "gradcam" if "gradcam" in methods else next(iter(methods))
        share = quality[head].bg_share
        e, c = _mean(share[is_err]), _mean(share[~is_err])
        area_e, area_c = _mean(area[is_err]), _mean(area[~is_err])
        for key, value, who in (
            ("background_share_errors", e, "errors"),
            ("background_share_correct", c, "correct"),
        ):
            res.metrics[key] = value if math.isfinite(value) else 0.0
            if not math.isfinite(value):
                res.warnings.append(
                    f"background share for {who} is undefined (no such cases with attribution)"
                )
        if math.isfinite(e) and math.isfinite(c):
            p_value = _difference_p(share[is_err], share[~is_err])
            res.metrics["background_share_p"] = p_value
            verdict = (
                f"a difference a two-sided Mann-Whitney U test supports (p = {p_value:.3g})"
                if p_value < self.faithfulness_alpha
                else f"a difference these {len(cases)} images do not establish "
                f"(two-sided Mann-Whitney U p = {p_value:.3g})"
            )
            res.summary.append(
                f"With {methods[head].label}, errors put {e:.0%} of their attribution on the background "
                f"versus {c:.0%} for correct predictions (the background covers {area_e:.0%} and "
                f"{area_c:.0%} of those images): {verdict}."
            )
        res.tables.append(
            Table(
                title="Share of attribution on the background, errors vs correct",
                columns=["method", "errors", "correct"],
                rows=bg_rows,
                caption=(
                    "Mean share of positive attribution on background pixels (all channels within "
                    f"{self.background_tolerance} of the dataset's background value). Background area: "
                    f"{_fmt(area_e, True)} of error images, {_fmt(area_c, True)} of correct ones."
                ),
            )
        )
        per_class: list[list[Any]] = []
        true = torch.tensor([c.true for c in cases])
        for k in sorted(set(true.tolist())):
            sel = true == k
            ne, nc = int((sel & is_err).sum()), int((sel & ~is_err).sum())
            per_class.append(
                [
                    names[k],
                    ne,
                    _fmt(_mean(share[sel & is_err]), True),
                    nc,
                    _fmt(_mean(share[sel & ~is_err]), True),
                ]
            )
        res.tables.append(
            Table(
                title=f"Background share per true class ({methods[head].label})",
                columns=["true class", "errors", "share (errors)", "correct", "share (correct)"],
                rows=per_class,
                caption="A few cases per class: read as a pointer, not a measurement.",
            )
        )

    def _figures(
        self,
        res: ProbeResult,
        cases: list[Case],
        names: list[str],
        x: Tensor,
        methods: dict[str, Attribution],
        maps: dict[str, Tensor],
        extra: dict[str, Tensor],
        quality: dict[str, _MethodQuality],
        random_q: _MethodQuality,
    ) -> None:
        def title(name: str, what: str) -> str:
            mark = "" if self._passes_sanity(quality[name]) else "\n(fails sanity check)"
            return f"{methods[name].label} {what}{mark}"

        columns: list[MapColumn] = []
        for name, method in methods.items():
            if name == "gradcam":
                columns.append(MapColumn(title(name, "(pred)"), maps[name]))
                columns.append(MapColumn(title(name, "(true)"), extra["gradcam_true"]))
            elif isinstance(method, Occlusion):
                columns.append(MapColumn(title(name, "drop (pred)"), maps[name], diverging=True))
                columns.append(MapColumn("occlusion: true-class\nconfidence", extra["occlusion_true_conf"]))
            else:
                columns.append(MapColumn(title(name, "(pred)"), maps[name], diverging=method.signed))
        n = len(cases)
        for part, start in enumerate(range(0, n, self.cases_per_figure), start=1):
            rows = list(range(start, min(start + self.cases_per_figure, n)))
            stem = f"cases_{part:02d}"
            res.figures[stem] = case_rows_figure(x, cases, columns, names, rows)
            res.captions[stem] = (
                f"Cases {rows[0] + 1}-{rows[-1] + 1} of {n}: image (test index, kind, true and predicted "
                "class, "
                "confidence, entropy H in nats) and each method's map; Grad-CAM for the predicted and "
                "the true "
                "class ('why X and not Y'); occlusion drop in blue-white-red (red: covering it lowers the "
                "predicted class), and the true class's probability with the patch at each place."
            )
        steps = self.curve_steps
        fractions = [k / steps for k in range(steps + 1)]
        deletion = {methods[k].label: q.deletion for k, q in quality.items()} | {"random": random_q.deletion}
        insertion = {methods[k].label: q.insertion for k, q in quality.items()} | {
            "random": random_q.insertion
        }
        res.figures["deletion_insertion"] = curves_figure(fractions, deletion, insertion)
        res.captions["deletion_insertion"] = (
            "Mean deletion and insertion curves over all cases (Petsiuk et al., 2018); "
            "dashed: random pixel order."
        )

    def _case_records(
        self,
        cases: list[Case],
        names: list[str],
        methods: dict[str, Attribution],
        quality: dict[str, _MethodQuality],
        random_q: _MethodQuality,
        occ_grid: Tensor | None,
    ) -> list[dict[str, Any]]:
        def num(v: Tensor) -> float | None:
            f = float(v)
            return round(f, 4) if math.isfinite(f) else None

        records = []
        for i, c in enumerate(cases):
            rec: dict[str, Any] = c.to_dict() | {"true_name": names[c.true], "pred_name": names[c.pred]}
            rec["random"] = {
                "deletion_auc": num(random_q.deletion_auc[i]),
                "insertion_auc": num(random_q.insertion_auc[i]),
            }
            for name in methods:
                q = quality[name]
                rec[name] = {
                    "deletion_auc": num(q.deletion_auc[i]),
                    "insertion_auc": num(q.insertion_auc[i]),
                    "randomization_spearman": num(q.spearman[i]),
                    "background_share": num(q.bg_share[i]) if len(q.bg_share) else None,
                }
            if occ_grid is not None:
                rec["occlusion_grid_pred"] = [[round(float(v), 4) for v in row] for row in occ_grid[i, 0]]
                rec["occlusion_grid_true"] = [[round(float(v), 4) for v in row] for row in occ_grid[i, 1]]
            records.append(rec)
        return records
