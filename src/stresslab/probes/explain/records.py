"""The explain probe's JSON records: one per case (joined by test index across probes and
runs) and the settings each method actually used."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from stresslab.probes.explain.compute import Explained
from stresslab.probes.explain.concentration import MethodConcentration
from stresslab.probes.explain.settings import ExplainSettings


def _num(v: Tensor) -> float | None:
    f = float(v)
    return round(f, 4) if math.isfinite(f) else None


def _grid(g: Tensor) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in g]


def case_records(
    explained: Explained, concentration: dict[str, MethodConcentration] | None = None
) -> list[dict[str, Any]]:
    """Per case: the case (position, test index, classes, confidence, entropy, kind), class
    names, and per method its AUCs, randomization correlation, background share and, with
    ``concentration``, the map's entropy and top-10% share (``None`` where undefined); for
    methods that hide regions, ``<name>_grid_pred`` and
    ``<name>_grid_true``: the class's probability with the patch at each window position."""
    names = explained.class_names
    random = explained.random
    records = []
    for i, c in enumerate(explained.cases):
        rec: dict[str, Any] = c.to_dict() | {"true_name": names[c.true], "pred_name": names[c.pred]}
        rec["random"] = {
            "deletion_auc": _num(random.deletion_auc[i]),
            "insertion_auc": _num(random.insertion_auc[i]),
        }
        for name, r in explained.methods.items():
            rec[name] = {
                "deletion_auc": _num(r.curves.deletion_auc[i]),
                "insertion_auc": _num(r.curves.insertion_auc[i]),
                "randomization_spearman": _num(r.spearman[i]),
                "background_share": _num(r.background_share[i]) if r.background_share is not None else None,
            }
            if concentration is not None and name in concentration:
                rec[name]["map_entropy"] = _num(concentration[name].entropy[i])
                rec[name]["map_top10_share"] = _num(concentration[name].top_share[i])
        for name, r in explained.methods.items():
            if r.grid is not None:
                rec[f"{name}_grid_pred"] = _grid(r.grid[i, 0])
                rec[f"{name}_grid_true"] = _grid(r.grid[i, 1])
        records.append(rec)
    return records


def settings_record(explained: Explained, settings: ExplainSettings, from_failures: bool) -> dict[str, Any]:
    """The settings used: ``method_settings`` per method as actually run (e.g. an occlusion
    window shrunk to fit the images), ``layer`` of the first CAM method, ``occlusion``
    (kept for readers of earlier records) and the checks' settings."""
    used = {name: r.method.used_settings() for name, r in explained.methods.items()}
    layers = [used[name]["layer"] for name, r in explained.methods.items() if r.method.needs_conv_layer]
    return {
        "methods": list(used),
        "method_settings": used,
        "layer": layers[0] if layers else None,
        "occlusion": used.get("occlusion"),
        "curve_steps": settings.curve_steps,
        "curve_fill": settings.curve_fill,
        "randomization": settings.randomization,
        "cases_from_failures_probe": from_failures,
        "indices": list(settings.indices) if settings.indices is not None else None,
        "n_correct_per_class": settings.n_correct_per_class,
        "n_correct": settings.n_correct,
    }
