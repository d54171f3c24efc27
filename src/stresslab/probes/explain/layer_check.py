"""The layer the CAM methods explain, checked on test images rather than assumed.

A method with no ``layer`` setting gets the layer :func:`~stresslab.models.layers.choose_cam_layer`
picks (the model's declared ``cam_layer`` when its maps are non-constant on enough images,
else the deepest candidate that is); a layer the user named is kept, with a warning when
its maps are mostly constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from stresslab.attributions.base import Attribution
from stresslab.errors import ConfigError
from stresslab.models.layers import CamChoice, cam_nonconstant, choose_cam_layer
from stresslab.probes.base import ProbeContext

MIN_NONCONSTANT = 0.95
"""Share of images whose maps must be non-constant for a layer to be chosen automatically."""


@dataclass
class LayerNotes:
    """What the layer check found: the summary sentences and warnings for the report and a
    JSON-safe record (``None`` when no method explains a layer)."""

    summary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None


def _declared(model: Any) -> str:
    try:
        return str(getattr(model, "cam_layer", "") or "")
    except ConfigError:  # a hub model whose layer search found none
        return ""


def fit_cam_layers(
    ctx: ProbeContext, methods: dict[str, Attribution], x: Tensor, given: set[str]
) -> tuple[dict[str, Attribution], LayerNotes]:
    """``methods`` (prepared) with the layer of each CAM method settled on images ``x``
    (N, C, H, W) in [0, 1], and the notes that say which layer, its map size and why.
    ``given``: the methods whose layer the user named (kept, and checked)."""
    notes = LayerNotes()
    cams = [name for name, m in methods.items() if m.needs_conv_layer]
    if not cams:
        return methods, notes
    out = dict(methods)
    auto = [name for name in cams if name not in given]
    named = {name: str(getattr(methods[name], "layer", "") or "") for name in cams if name in given}
    record: dict[str, Any] = {"min_share_nonconstant": MIN_NONCONSTANT, "images": len(x)}
    if auto:
        choice = choose_cam_layer(ctx.model, x, min_share=MIN_NONCONSTANT, prefer=_declared(ctx.model))
        record["auto"] = choice.record()
        labels = ", ".join(methods[n].label for n in auto)
        if choice.layer:
            for name in auto:
                out[name] = methods[name].with_changes(layer=choice.layer)
            h, w = choice.size
            notes.summary.append(f"{labels} explain layer {choice.layer} ({h}x{w} maps): {choice.reason}.")
        else:
            notes.warnings.append(_all_constant(labels, choice))
    for name, layer in named.items():
        share = cam_nonconstant(ctx.model, [layer], x)[layer] / max(1, len(x))
        record.setdefault("given", {})[name] = {"layer": layer, "share_nonconstant": share}
        label = methods[name].label
        if share < MIN_NONCONSTANT:
            notes.warnings.append(
                f"{label}: the layer given in the settings ({layer}) gives constant maps on "
                f"{1 - share:.0%} of {len(x)} test images; leave probes.explain.methods.{name}.layer "
                "unset to have a layer chosen that gives non-constant maps"
            )
        else:
            notes.summary.append(
                f"{label} explains layer {layer} (given in the settings): non-constant maps on "
                f"{share:.0%} of {len(x)} test images."
            )
    notes.record = record
    return out, notes


def _all_constant(labels: str, choice: CamChoice) -> str:
    return (
        f"{labels}: {choice.reason}; their maps are mostly constant on this model, so they say "
        "little (the other methods are unaffected). Name a layer with "
        "probes.explain.methods.gradcam.layer to choose one by hand"
    )
