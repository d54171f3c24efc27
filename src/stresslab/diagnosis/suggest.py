"""From diagnosis to intervention: a study whose arms target the run's top causes.

The mapping (one arm per line; an arm already in the run's config is not repeated):

=====================  =====================================================================
cause                  arms
=====================  =====================================================================
label_error            ``clean_labels``: ``data.drop_train_indices`` = the training labels
                       ``label_issues`` flagged in ``cross_val`` mode (only when it searched
                       the training set); ``label_smoothing``: ``train.label_smoothing`` + 0.1
ambiguous              ``mixup``: ``train.augment.mixup_alpha: 0.2``; ``longer``: twice the epochs
image_quality          ``crop_rotate``: ``train.augment.crop_padding: 2``,
                       ``rotation_deg: 10`` (the geometric augmentation stresslab has; it has
                       no photometric one yet)
shortcut               ``random_erasing``: ``train.augment.erasing_prob: 0.5``;
                       ``cutmix``: ``train.augment.cutmix_alpha: 1.0``
model_error            ``longer``: twice the epochs
out_of_distribution    none: no change of training fixes images of no class; the report says so
=====================  =====================================================================

A cause is targeted when it explains at least :data:`MIN_SHARE` of the failures (the top
:data:`MAX_CAUSES` of them). The baseline arm is the run's own config, 3 seeds,
``compare_to: baseline``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

MIN_SHARE = 0.1
MAX_CAUSES = 3
SEEDS = (0, 1, 2)


def _arms_for(cause: str, train: Mapping[str, Any], flagged: list[int]) -> dict[str, dict[str, Any]]:
    augment = train.get("augment", {}) or {}
    epochs = int(train.get("epochs", 1) or 1)
    if cause == "label_error":
        arms: dict[str, dict[str, Any]] = {}
        if flagged:
            arms["clean_labels"] = {"data.drop_train_indices": sorted(flagged)}
        smoothing = float(train.get("label_smoothing", 0.0) or 0.0)
        arms["label_smoothing"] = {"train.label_smoothing": round(min(smoothing + 0.1, 0.5), 3)}
        return arms
    if cause == "ambiguous":
        arms = {} if augment.get("mixup_alpha") else {"mixup": {"train.augment.mixup_alpha": 0.2}}
        return {**arms, "longer": {"train.epochs": 2 * epochs}}
    if cause == "image_quality":
        return {"crop_rotate": {"train.augment.crop_padding": 2, "train.augment.rotation_deg": 10.0}}
    if cause == "shortcut":
        arms = {} if augment.get("erasing_prob") else {"random_erasing": {"train.augment.erasing_prob": 0.5}}
        if not augment.get("cutmix_alpha"):
            arms["cutmix"] = {"train.augment.cutmix_alpha": 1.0}
        return arms
    if cause == "model_error":
        return {"longer": {"train.epochs": 2 * epochs}}
    return {}


def flagged_training_labels(label_issues: Mapping[str, Any] | None) -> list[int]:
    """Official training indices ``label_issues`` flagged (cross_val mode), else []."""
    if not label_issues:
        return []
    train = label_issues.get("data", {}).get("train") or {}
    return [int(r["index"]) for r in train.get("issues", [])]


def suggest_study(
    config: Mapping[str, Any],
    diagnosis: Mapping[str, Any],
    label_issues: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A study mapping (as ``stresslab study`` reads) and the reasons behind each arm.

    Args:
        config: the run's resolved config (``config.resolved.yaml``), the baseline.
        diagnosis: the saved diagnosis record (``results/diagnosis.json``).
        label_issues: the saved ``label_issues`` record, for the flagged training labels.
    """
    counts: dict[str, int] = dict(diagnosis.get("data", {}).get("counts", {}))
    total = sum(counts.values())
    ranked = sorted(
        (c for c, n in counts.items() if total and n / total >= MIN_SHARE), key=lambda c: -counts[c]
    )
    base = {k: copy.deepcopy(v) for k, v in config.items() if k not in ("name", "seed")}
    train = base.get("train", {}) or {}
    flagged = flagged_training_labels(label_issues)
    arms: dict[str, dict[str, Any]] = {"baseline": {}}
    reasons: list[str] = []
    for cause in ranked[:MAX_CAUSES]:
        new = {k: v for k, v in _arms_for(cause, train, flagged).items() if k not in arms}
        share = counts[cause] / total
        if new:
            reasons.append(f"{cause} explains {share:.0%} of the failures: arms {', '.join(new)}")
        elif cause == "out_of_distribution":
            reasons.append(
                f"{cause} explains {share:.0%}: no training change targets it (reject such inputs)"
            )
        if cause == "label_error" and not flagged:
            reasons.append(
                "label_issues did not search the training set (mode cross_val): no clean_labels arm"
            )
        arms.update(new)
    study = {
        "name": name or f"{config.get('name') or 'run'}-suggested",
        "base": base,
        "seeds": list(SEEDS),
        "arms": arms,
        "compare_to": "baseline",
    }
    return study, reasons
