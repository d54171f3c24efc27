"""The ``explain`` probe: the registered attribution methods on the failures, with each
method's faithfulness, sanity and background share measured.

The work is split by job: ``cases`` picks the images, ``compute`` maps them and measures,
``checks`` gives the verdicts, ``present``/``figures``/``records`` write them down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.data.base import to_float
from stresslab.probes.base import Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.explain.cases import HIGH_CONFIDENCE, CaseChoice, sample_cases, select_cases
from stresslab.probes.explain.checks import run_checks
from stresslab.probes.explain.compute import compute, prepare_methods, reordered
from stresslab.probes.explain.concentration import concentration
from stresslab.probes.explain.concentration_present import concentration_figure, present_concentration
from stresslab.probes.explain.data_randomization import DataRandomizationSettings, data_randomization_test
from stresslab.probes.explain.data_randomization_present import present_data_randomization
from stresslab.probes.explain.figures import explain_figures
from stresslab.probes.explain.further_tests import further_tests
from stresslab.probes.explain.further_tests_present import present_further_tests
from stresslab.probes.explain.layer_check import fit_cam_layers
from stresslab.probes.explain.layer_names import resolve_cam_layers
from stresslab.probes.explain.present import present
from stresslab.probes.explain.records import case_records, settings_record
from stresslab.probes.explain.settings import (
    DEFAULT_METHODS,
    RETIRED,
    ExplainSettings,
    MethodsSpec,
    build_methods,
    method_specs,
    with_offered,
)

LAYER_IMAGES = 128
"""Images the CAM layer is checked on (the first of the quality sample)."""


@register_probe("explain")
class ExplainProbe(Probe):
    """Explain the failures found by ``failures`` and measure how far each map can be trusted.

    Settings: how many high-confidence errors (``n_high_confidence``), uncertain
    predictions (``n_uncertain``) and correct predictions to explain: ``n_correct_per_class``
    per class, or ``n_correct`` in all, spread over the classes in turn (by default one per
    class up to ``CORRECT_CAP`` = 20 classes, else 20 spread); errors count as
    high-confidence from ``min_error_confidence`` when the ``failures`` probe did not run.
    ``indices``: explain exactly these official test-set indices instead (e.g. the images a
    study looked at); indices not in the run's test set are named in a warning.
    ``methods``: names from ``ATTRIBUTIONS`` (``[gradcam, saliency]``, default settings) or each
    with its settings (``{occlusion: {window: 8, stride: 2, fill: gray}, gradcam: {layer:
    body.2}}``); the settings of each method are its class's ``options``. With the default
    methods, a vision transformer is also explained by attention rollout
    (:data:`~stresslab.probes.explain.settings.OFFERED`); a method that cannot explain the model
    (attention rollout on a CNN) is skipped with a warning saying why. Deletion and insertion
    curves (``curve_steps`` steps) replace pixels by ``curve_fill`` and are compared with
    ``random_maps`` random orderings; a method counts as faithful when its per-image gain over
    random is positive by a one-sided Wilcoxon signed-rank test at ``faithfulness_alpha``. The
    randomization test re-initializes the weights of a copy of the model (``randomization``:
    ``full`` = all layers, ``top`` = the last layer only); a method fails when the mean rank
    correlation between its maps on the trained and the randomized model is at least
    ``randomization_threshold``. ``data_randomization`` (``{epochs: N, threshold: 0.5}``; off
    when ``None``) runs the data randomization test of Adebayo et al. (2018): a copy of the
    model with fresh weights is trained by the run's recipe, for ``epochs`` epochs, on the same
    training images with permuted labels, and a method fails when the median rank correlation
    between its maps of the two models is at least ``threshold``. Background pixels are those
    within ``background_tolerance`` of the dataset's background value.

    The verdicts (faithfulness, randomization, background share, concentration tests) are
    measured on a separate seeded sample of ``quality_images`` test images (``ctx.sample``;
    0: on the explained cases only), with the mean gain over random and its 95% confidence
    interval beside each p-value; the galleries show the cases, most faithful method first.
    Further tests on the same sample: ROAD (Rong et al. 2022), the model's prediction kept or
    not as the most (MoRF) or least (LeRF) relevant ``road_percentages`` of the pixels are
    filled by noisy linear imputation (noise ``road_noise``), on ``road_images`` of the sample;
    localisation, the share of positive attribution on the object where the dataset has a plain
    background (relevance mass accuracy) and relevance rank accuracy (Arras et al. 2022); and
    max-sensitivity (Yeh et al. 2019), the largest relative change of a map over
    ``sensitivity_samples`` uniform input perturbations of radius ``sensitivity_radius``, on
    ``sensitivity_images`` of the sample (0 switches ROAD or max-sensitivity off).
    A CAM method with no ``layer`` explains the layer that gives non-constant maps on
    at least 95% of the first 128 sample images (the model's ``cam_layer`` when it does).

    The flat settings of earlier versions (``layer``, ``occlusion_window``, ...) are
    :data:`~stresslab.probes.explain.settings.RETIRED`: a config that gives one is refused
    with the ``methods`` form to write instead.
    """

    order = 30
    requires = ("failures",)
    retired = RETIRED

    def __init__(
        self,
        *,
        n_high_confidence: int = 8,
        n_uncertain: int = 4,
        n_correct_per_class: int | None = None,
        n_correct: int | None = None,
        indices: Sequence[int] | None = None,
        min_error_confidence: float = 0.9,
        methods: MethodsSpec = DEFAULT_METHODS,
        curve_steps: int = 20,
        curve_fill: str | float = "zero",
        random_maps: int = 2,
        randomization: str = "full",
        randomization_threshold: float = 0.5,
        faithfulness_alpha: float = 0.05,
        background_tolerance: float = 0.05,
        cases_per_figure: int = 6,
        quality_images: int = 256,
        road_percentages: Sequence[float] = (10.0, 30.0, 50.0, 70.0, 90.0),
        road_noise: float = 0.01,
        road_images: int = 128,
        sensitivity_images: int = 32,
        sensitivity_samples: int = 8,
        sensitivity_radius: float = 0.05,
        data_randomization: Mapping[str, Any] | None = None,
    ) -> None:
        specs = method_specs(methods)
        self.methods = build_methods(specs)
        self.offer = methods is DEFAULT_METHODS  # add OFFERED methods that fit the model
        self.data_randomization = DataRandomizationSettings.parse(data_randomization)
        self.settings = ExplainSettings(
            n_high_confidence=n_high_confidence,
            n_uncertain=n_uncertain,
            n_correct_per_class=n_correct_per_class,
            n_correct=n_correct,
            indices=_indices(indices),
            min_error_confidence=min_error_confidence,
            curve_steps=curve_steps,
            curve_fill=curve_fill,
            random_maps=random_maps,
            randomization=randomization,
            randomization_threshold=randomization_threshold,
            faithfulness_alpha=faithfulness_alpha,
            background_tolerance=background_tolerance,
            cases_per_figure=cases_per_figure,
            quality_images=quality_images,
            road_percentages=_percentages(road_percentages),
            road_noise=road_noise,
            road_images=road_images,
            sensitivity_images=sensitivity_images,
            sensitivity_samples=sensitivity_samples,
            sensitivity_radius=sensitivity_radius,
        )

    def check(self, model: nn.Module, sample: Tensor) -> None:
        """Resolve each CAM method's layer in ``model`` (``conv3`` of a wrapped user module is
        ``body.conv3``), replacing ``self.methods``; ConfigError naming the candidate layers
        where a named layer does not exist or the model has no conv layer to explain."""
        self.methods = resolve_cam_layers(self.methods, model, sample)

    def needs_training_data(self) -> str | None:
        """A reason only when the data randomization test is on: it trains on the training set."""
        if self.data_randomization is None:
            return None
        return (
            "its data randomization test trains a copy of the model on the training images, and "
            "there are none (set probes.explain.data_randomization: null to run the rest)"
        )

    def run(self, ctx: ProbeContext) -> ProbeResult:
        s = self.settings
        res = ProbeResult()
        choice = CaseChoice(
            s.n_high_confidence,
            s.n_uncertain,
            s.min_error_confidence,
            s.n_correct_per_class,
            s.n_correct,
            s.indices,
        )
        cases, offered, notes = select_cases(ctx, choice)
        res.warnings.extend(notes)
        if offered is None and s.indices is None:
            res.warnings.append(
                "the failures probe did not run; cases were picked from the predictions "
                f"(errors with confidence >= {s.min_error_confidence}, highest entropy)"
            )
        n_err = sum(c.is_error for c in cases)
        res.metrics.update({"n_cases": float(len(cases)), "n_errors": float(n_err)})
        res.metrics["n_correct"] = float(len(cases) - n_err)
        threshold = offered.threshold if offered is not None else s.min_error_confidence
        if s.indices is None and not any(c.kind == HIGH_CONFIDENCE for c in cases):
            res.warnings.append(
                f"no errors with confidence >= {threshold}; no high-confidence errors to explain"
            )
        if not cases:
            res.summary.append("No test images to explain.")
            return res

        listed = with_offered(self.methods, ctx.model) if self.offer else self.methods
        methods, notes = prepare_methods(ctx, listed)
        res.warnings.extend(notes)
        if not methods:
            res.summary.append("No attribution method listed can explain this model (see the warnings).")
            return res
        res.warnings.extend(self._baseline_notes(ctx, methods))
        sample = sample_cases(ctx, s.quality_images) if s.quality_images else []
        layer_x = to_float(ctx.split.test_x[torch.tensor([c.position for c in (sample or cases)])])
        named = {name for name, m in self.methods.items() if getattr(m, "layer", None)}
        methods, layer_notes = fit_cam_layers(ctx, methods, layer_x[:LAYER_IMAGES], named)
        res.summary.extend(layer_notes.summary)
        res.warnings.extend(layer_notes.warnings)
        explained = compute(ctx, cases, methods, s)
        quality = compute(ctx, sample, methods, s) if sample else explained
        checks = run_checks(quality, s)
        present(res, explained, checks, s, quality)
        tests = further_tests(ctx, quality, s)
        tests_record = present_further_tests(res, quality, tests, s, checks.ranking)
        explained, quality = reordered(explained, checks.ranking), reordered(quality, checks.ranking)
        found = concentration(quality)
        present_concentration(res, quality, found, s.faithfulness_alpha, sampled=bool(sample))
        explain_figures(res, explained, checks, s.cases_per_figure)
        res.figures["concentration_vs_uncertainty"] = concentration_figure(quality, found)
        which = "sampled test image's" if sample else "explained case's"
        res.captions["concentration_vs_uncertainty"] = (
            f"Is a map more diffuse when the prediction is uncertain? Each {which} map entropy "
            "(top) and top-10% mass share (bottom) against the prediction's entropy, per method; "
            "Spearman's rho and p in the titles."
        )
        res.data["cases"] = case_records(explained, concentration(explained) if sample else found)
        res.data["settings"] = settings_record(explained, s, from_failures=offered is not None)
        res.data["settings"]["cam_layer_check"] = layer_notes.record
        res.data["settings"]["quality_images"] = len(quality.cases)
        res.data["settings"]["ranking"] = checks.ranking
        res.data["settings"]["further_tests"] = tests_record
        if self.data_randomization is not None:
            if ctx.train_config is None:
                res.warnings.append(
                    "the data randomization test was not run: it trains a copy of the model by the run's "
                    "recipe, and this probe was given none (run it through stresslab run)"
                )
            else:
                randomized = data_randomization_test(ctx, explained, methods, self.data_randomization)
                present_data_randomization(res, randomized, explained, s.cases_per_figure)
        return res

    def _baseline_notes(self, ctx: ProbeContext, methods: dict[str, Attribution]) -> list[str]:
        """Warn where a method's baseline is the background: its background share is void."""
        info, tolerance = ctx.info, self.settings.background_tolerance
        if info.background is None:
            return []
        notes = []
        for method in methods.values():
            base = method.baseline_fill(info.channels)
            if base is not None and bool(((base - info.background).abs() <= tolerance).all()):
                notes.append(
                    f"{method.label} uses a baseline equal to the background, so it gives the "
                    "background zero attribution by construction; its background share says nothing"
                )
        return notes


def _percentages(values: Sequence[float]) -> tuple[float, ...]:
    """``road_percentages`` as a tuple of floats; a single number, a string or a list of
    anything but numbers is refused."""
    if (
        isinstance(values, (str, bytes))
        or not isinstance(values, Sequence)
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)
    ):
        raise ValueError(f"road_percentages must be a list of percentages in (0, 100), got {values!r}")
    return tuple(float(v) for v in values)


def _indices(indices: Sequence[int] | None) -> tuple[int, ...] | None:
    """``indices`` as a tuple (``None`` stays); a single number or a string is refused."""
    if indices is None:
        return None
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
        raise ValueError(f"indices must be a list of official test-set indices, got {indices!r}")
    return tuple(indices)
