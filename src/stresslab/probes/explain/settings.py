"""The explain probe's settings: the methods to run (each with its own settings, built from
the ``ATTRIBUTIONS`` registry) and the settings of the checks and the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from stresslab.attributions.base import ATTRIBUTIONS, Attribution, check_fill
from stresslab.errors import ConfigError

MethodsSpec = Sequence[str] | Mapping[str, Mapping[str, Any] | None]
"""``[gradcam, saliency]`` (default settings) or ``{occlusion: {window: 8}, gradcam: {}}``."""

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "saliency", "smoothgrad", "occlusion")

OFFERED: tuple[str, ...] = ("attention_rollout",)
"""Methods added to the default ones on the models they can explain (attention rollout on a
vision transformer); listed by hand on another model, they are skipped with the reason."""

# Flat probe settings of earlier versions -> where each now goes (``build_probe`` names it).
RETIRED: dict[str, str] = {
    "layer": "methods: {{gradcam: {{layer: {value}}}}} (and gradcam_plus_plus, if listed)",
    "occlusion_window": "methods: {{occlusion: {{window: {value}}}}}",
    "occlusion_stride": "methods: {{occlusion: {{stride: {value}}}}}",
    "occlusion_fill": "methods: {{occlusion: {{fill: {value}}}}}",
    "smoothgrad_samples": "methods: {{smoothgrad: {{samples: {value}}}}}",
    "smoothgrad_noise": "methods: {{smoothgrad: {{noise: {value}}}}}",
    "ig_steps": "methods: {{integrated_gradients: {{steps: {value}}}}}",
    "ig_baseline": "methods: {{integrated_gradients: {{baseline: {value}}}}}",
}


@dataclass(frozen=True)
class ExplainSettings:
    """Settings of the explain probe other than the methods (see ``ExplainProbe``)."""

    n_high_confidence: int = 8
    n_uncertain: int = 4
    n_correct_per_class: int | None = None
    n_correct: int | None = None
    indices: tuple[int, ...] | None = None
    min_error_confidence: float = 0.9
    curve_steps: int = 20
    curve_fill: str | float = "zero"
    random_maps: int = 2
    randomization: str = "full"
    randomization_threshold: float = 0.5
    faithfulness_alpha: float = 0.05
    background_tolerance: float = 0.05
    cases_per_figure: int = 6
    quality_images: int = 256
    road_percentages: tuple[float, ...] = (10.0, 30.0, 50.0, 70.0, 90.0)
    road_noise: float = 0.01
    road_images: int = 128
    sensitivity_images: int = 32
    sensitivity_samples: int = 8
    sensitivity_radius: float = 0.05

    def __post_init__(self) -> None:
        counts = (
            self.n_high_confidence,
            self.n_uncertain,
            self.n_correct_per_class or 0,
            self.n_correct or 0,
        )
        if min(counts) < 0:
            raise ValueError("case counts must be >= 0")
        if self.n_correct_per_class is not None and self.n_correct is not None:
            raise ValueError(
                "set n_correct_per_class (per class) or n_correct (in all, spread over the classes), not both"
            )
        if self.indices is not None:
            bad = [i for i in self.indices if isinstance(i, bool) or not isinstance(i, int) or i < 0]
            if bad or not self.indices:
                raise ValueError(
                    "indices must be a non-empty list of official test-set indices (integers >= 0); "
                    f"got {list(self.indices)!r}"
                )
        if self.quality_images < 0:
            raise ValueError(
                f"quality_images must be >= 0 (0: the explained cases only), got {self.quality_images}"
            )
        if self.curve_steps < 2 or self.random_maps < 1 or self.cases_per_figure < 1:
            raise ValueError("curve_steps >= 2, random_maps >= 1 and cases_per_figure >= 1 are required")
        if self.randomization not in ("full", "top"):
            raise ValueError("randomization must be 'full' or 'top'")
        if not 0.0 < self.faithfulness_alpha < 1.0:
            raise ValueError(f"faithfulness_alpha must be in (0, 1), got {self.faithfulness_alpha}")
        check_fill(self.curve_fill)
        self._check_further_tests()

    def _check_further_tests(self) -> None:
        """ROAD and max-sensitivity settings (see ``ExplainProbe``)."""
        pct = self.road_percentages
        if not pct or any(isinstance(p, bool) or not 0.0 < float(p) < 100.0 for p in pct):
            raise ValueError(f"road_percentages must be numbers in (0, 100), got {list(pct)!r}")
        if self.road_noise < 0:
            raise ValueError(f"road_noise must be >= 0 (pixel units), got {self.road_noise}")
        if self.road_images < 0 or self.sensitivity_images < 0:
            raise ValueError(
                "road_images and sensitivity_images must be >= 0 (0: off), got "
                f"{self.road_images} and {self.sensitivity_images}"
            )
        if self.sensitivity_samples < 1 or not 0.0 < self.sensitivity_radius <= 1.0:
            raise ValueError(
                "sensitivity_samples must be >= 1 and sensitivity_radius in (0, 1] (pixel units), got "
                f"{self.sensitivity_samples} and {self.sensitivity_radius}"
            )


def method_specs(methods: MethodsSpec) -> dict[str, dict[str, Any]]:
    """``methods`` as ``{name: settings}`` in the order given (a list means default settings)."""
    if isinstance(methods, str) or not isinstance(methods, (Sequence, Mapping)):
        raise ConfigError(
            "probes.explain.methods: expected a list of method names or a mapping of method "
            f"name to its settings, got {methods!r}"
        )
    if isinstance(methods, Mapping):
        specs: dict[str, dict[str, Any]] = {}
        for name, settings in methods.items():
            if settings is not None and not isinstance(settings, Mapping):
                raise ConfigError(
                    f"probes.explain.methods.{name}: expected a mapping of settings, got {settings!r}"
                )
            specs[str(name)] = dict(settings or {})
        return specs
    return {str(name): {} for name in methods}


def build_methods(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Attribution]:
    """``ATTRIBUTIONS.build(name, **settings)`` for each method; unknown names and settings are
    ConfigErrors naming ``probes.explain.methods.<name>[.<key>]``."""
    if not specs:
        raise ConfigError("probes.explain: methods must name at least one method")
    out: dict[str, Attribution] = {}
    for name, settings in specs.items():
        out[name] = ATTRIBUTIONS.build(name, where=f"probes.explain.methods.{name}", **settings)
    return out


def with_offered(methods: Mapping[str, Attribution], model: nn.Module) -> dict[str, Attribution]:
    """``methods`` plus each method of :data:`OFFERED` (default settings) that can explain
    ``model`` (its ``unavailable`` gives no reason) and is not already there."""
    out = dict(methods)
    for name in OFFERED:
        if name not in out:
            method = ATTRIBUTIONS.build(name, where=f"probes.explain.methods.{name}")
            if not method.unavailable(model):
                out[name] = method
    return out
