"""From diagnosis to intervention: a study whose arms target the run's top causes.

The mapping (one arm per line; an arm already in the run's config is not repeated):

=====================  =====================================================================
cause                  arms
=====================  =====================================================================
label_error            ``clean_labels``: ``data.drop_train_indices`` = the training labels
                       ``label_issues`` flagged in ``cross_val`` mode (only when it searched
                       the training set); ``label_smoothing``: ``train.label_smoothing`` + 0.1
ambiguous              ``mixup``: ``train.augment.mixup_alpha: 0.2``; ``longer``: twice the epochs
image_quality          the photometric augmentation matching the property most often flagged
                       among its failures (``quality_flags``): brightness ->
                       ``brightness_aug`` (``train.augment.brightness: 0.8``), contrast ->
                       ``contrast_aug`` (``contrast: 0.8``), low sharpness -> ``blur_aug``
                       (``blur_prob: 0.5``, ``blur_sigma: 2.0``), high sharpness -> ``noise_aug``
                       (``noise_std: 0.1``), high blockiness -> ``blur_aug`` (the nearest
                       loss of detail), high flat area (a patch covering the object) ->
                       ``random_erasing`` (``erasing_prob: 0.5``); without flags, the one
                       matching the weakest corruption
shortcut               ``random_erasing``: ``train.augment.erasing_prob: 0.5``;
                       ``cutmix``: ``train.augment.cutmix_alpha: 1.0``
model_error            ``longer``: twice the epochs
out_of_distribution    none: no change of training fixes images of no class; the report says so
corruption weakness    where the ``corruption`` probe ran, one more arm: the augmentation
                       matching its weakest corruption (lowest mean accuracy over severities)
                       among brightness, contrast, the blurs and the noises
=====================  =====================================================================

A cause is targeted when it explains at least :data:`MIN_SHARE` of the failures (the top
:data:`MAX_CAUSES` of them). The baseline arm is the run's own config, 3 seeds,
``compare_to: baseline``.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from typing import Any

MIN_SHARE = 0.1
MAX_CAUSES = 3
SEEDS = (0, 1, 2)


#: Photometric augmentation arms by the image property they vary (see ``PhotometricAugment``).
PHOTOMETRIC: dict[str, tuple[str, dict[str, Any]]] = {
    "brightness": ("brightness_aug", {"train.augment.brightness": 0.8}),
    "contrast": ("contrast_aug", {"train.augment.contrast": 0.8}),
    "blur": ("blur_aug", {"train.augment.blur_prob": 0.5, "train.augment.blur_sigma": 2.0}),
    "noise": ("noise_aug", {"train.augment.noise_std": 0.1}),
    "occlusion": ("random_erasing", {"train.augment.erasing_prob": 0.5}),
}

#: Image-quality flag (``quality_flags``) -> the property an augmentation varies.
FLAG_PROPERTY = {
    "low brightness": "brightness",
    "high brightness": "brightness",
    "low contrast": "contrast",
    "high contrast": "contrast",
    "low sharpness": "blur",
    "high sharpness": "noise",
    "high blockiness": "blur",
    "high flat_area": "occlusion",
}


def corruption_property(name: str) -> str | None:
    """The property a corruption (``CORRUPTIONS`` name) varies that an augmentation can match:
    brightness, contrast, blur (``*_blur``) or noise (``*_noise``); None for the others."""
    if name in ("brightness", "contrast"):
        return name
    if name.endswith("_blur"):
        return "blur"
    if name.endswith("_noise"):
        return "noise"
    return None


def weakest_corruption(corruption: Mapping[str, Any] | None) -> tuple[str, float] | None:
    """The corruption with the lowest mean accuracy over severities that an augmentation can
    match, and that accuracy, from the saved ``corruption`` record; None without one."""
    data = (corruption or {}).get("data", {})
    rows = []
    for name, acc in zip(data.get("corruptions", []), data.get("accuracy", []), strict=False):
        values = [float(v) for v in acc if v is not None]
        if corruption_property(name) and values:
            rows.append((name, sum(values) / len(values)))
    return min(rows, key=lambda r: r[1]) if rows else None


def quality_property(rows: list[Mapping[str, Any]]) -> str | None:
    """The property most often flagged among the ``image_quality`` failures, None when none is."""
    seen: Counter[str] = Counter()
    for r in rows:
        if r.get("cause") == "image_quality":
            for flag in str(r.get("quality_flags") or "").split("; "):
                if flag in FLAG_PROPERTY:
                    seen[FLAG_PROPERTY[flag]] += 1
    return seen.most_common(1)[0][0] if seen else None


def _photometric(prop: str | None) -> dict[str, dict[str, Any]]:
    if prop is None:
        return {}
    name, overrides = PHOTOMETRIC[prop]
    return {name: dict(overrides)}


def _arms_for(
    cause: str, train: Mapping[str, Any], flagged: list[int], quality: str | None = None
) -> dict[str, dict[str, Any]]:
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
        return _photometric(quality)
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
    corruption: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A study mapping (as ``stresslab study`` reads) and the reasons behind each arm.

    Args:
        config: the run's resolved config (``config.resolved.yaml``), the baseline.
        diagnosis: the saved diagnosis record (``results/diagnosis.json``).
        label_issues: the saved ``label_issues`` record, for the flagged training labels.
        corruption: the saved ``corruption`` record, for the weakest corruption.
    """
    data = diagnosis.get("data", {})
    counts: dict[str, int] = dict(data.get("counts", {}))
    total = sum(counts.values())
    ranked = sorted(
        (c for c, n in counts.items() if total and n / total >= MIN_SHARE), key=lambda c: -counts[c]
    )
    base = {k: copy.deepcopy(v) for k, v in config.items() if k not in ("name", "seed")}
    train = base.get("train", {}) or {}
    flagged = flagged_training_labels(label_issues)
    weakest = weakest_corruption(corruption)
    quality = quality_property(data.get("rows", [])) or (corruption_property(weakest[0]) if weakest else None)
    arms: dict[str, dict[str, Any]] = {"baseline": {}}
    reasons: list[str] = []
    for cause in ranked[:MAX_CAUSES]:
        new = {k: v for k, v in _arms_for(cause, train, flagged, quality).items() if k not in arms}
        new = {k: v for k, v in new.items() if not _already_on(v, train)}
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
    if weakest is not None:
        extra = {
            k: v
            for k, v in _photometric(corruption_property(weakest[0])).items()
            if k not in arms and not _already_on(v, train)
        }
        if extra:
            reasons.append(
                f"the weakest corruption is {weakest[0]} (mean accuracy {weakest[1]:.1%} over "
                f"severities): arm {', '.join(extra)}"
            )
        arms.update(extra)
    study = {
        "name": name or f"{config.get('name') or 'run'}-suggested",
        "base": base,
        "seeds": list(SEEDS),
        "arms": arms,
        "compare_to": "baseline",
    }
    return study, reasons


def _already_on(overrides: Mapping[str, Any], train: Mapping[str, Any]) -> bool:
    """True when the run's config already sets a photometric option the arm would set."""
    augment = train.get("augment", {}) or {}
    keys = [k.rsplit(".", 1)[1] for k in overrides if k.startswith("train.augment.")]
    photometric = {"brightness", "contrast", "blur_prob", "noise_std", "erasing_prob"}
    return any(k in photometric and augment.get(k) for k in keys)
