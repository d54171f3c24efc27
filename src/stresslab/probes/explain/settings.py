"""The explain probe's settings: the methods to run (each with its own settings, built from
the ``ATTRIBUTIONS`` registry) and the settings of the checks and the report."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stresslab.attributions.base import ATTRIBUTIONS, Attribution, check_fill
from stresslab.errors import ConfigError

log = logging.getLogger(__name__)

MethodsSpec = Sequence[str] | Mapping[str, Mapping[str, Any] | None]
"""``[gradcam, saliency]`` (default settings) or ``{occlusion: {window: 8}, gradcam: {}}``."""

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "saliency", "smoothgrad", "occlusion")

# Flat probe settings of earlier versions -> (method, its setting); method None means
# every method that explains a conv layer.
LEGACY_KEYS: dict[str, tuple[str | None, str]] = {
    "layer": (None, "layer"),
    "occlusion_window": ("occlusion", "window"),
    "occlusion_stride": ("occlusion", "stride"),
    "occlusion_fill": ("occlusion", "fill"),
    "smoothgrad_samples": ("smoothgrad", "samples"),
    "smoothgrad_noise": ("smoothgrad", "noise"),
    "ig_steps": ("integrated_gradients", "steps"),
    "ig_baseline": ("integrated_gradients", "baseline"),
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


def apply_legacy_keys(specs: dict[str, dict[str, Any]], legacy: Mapping[str, Any]) -> None:
    """Move flat settings of earlier versions (``occlusion_window: 4``) into ``specs``
    (``{occlusion: {window: 4}}``) with a deprecation warning naming the new form. A flat
    key for a method that is not listed has no effect, as before."""
    for key, value in legacy.items():
        if value is None:
            continue
        method, option = LEGACY_KEYS[key]
        new = f"{{{method or 'gradcam'}: {{{option}: {value!r}}}}}"
        log.warning("probes.explain.%s is deprecated; write it as probes.explain.methods: %s", key, new)
        for name, settings in specs.items():
            if (method is None and ATTRIBUTIONS.get(name).needs_conv_layer) or name == method:
                if option in settings and settings[option] != value:
                    raise ConfigError(
                        f"probes.explain.{key} ({value!r}) contradicts "
                        f"probes.explain.methods.{name}.{option} ({settings[option]!r}); keep the latter"
                    )
                settings.setdefault(option, value)


def build_methods(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Attribution]:
    """``ATTRIBUTIONS.get(name)(**settings)`` for each method; unknown names and settings are
    ConfigErrors naming ``probes.explain.methods.<name>[.<key>]``."""
    if not specs:
        raise ConfigError("probes.explain: methods must name at least one method")
    out: dict[str, Attribution] = {}
    for name, settings in specs.items():
        if name not in ATTRIBUTIONS:
            raise ConfigError(
                f"probes.explain.methods: unknown method {name!r}; "
                f"choose from {', '.join(ATTRIBUTIONS.names())}"
            )
        cls = ATTRIBUTIONS.get(name)
        for key in settings:
            if key not in cls.options:
                raise ConfigError(
                    f"probes.explain.methods.{name}.{key}: unknown setting; "
                    f"accepted: {', '.join(cls.options) or '(none)'}"
                )
        try:
            out[name] = cls(**settings)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"probes.explain.methods.{name}: {e}") from e
    return out
