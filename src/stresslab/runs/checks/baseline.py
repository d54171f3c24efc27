"""A run against a baseline run on the same test images: McNemar on the discordant images,
negative flips (Yan et al., "Positive-Congruent Training", CVPR 2021), confidently broken
images, per-class accuracy drops and the change in ECE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stresslab.errors import ConfigError
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.metrics.paired import mcnemar_exact, negative_flips
from stresslab.runs.checks.spec import BaselineRules
from stresslab.runs.directory import RunDir
from stresslab.runs.saved_predictions import FILENAME, SavedPredictions, load_predictions


def aligned(new: SavedPredictions, old: SavedPredictions, new_dir: Path, old_dir: Path) -> np.ndarray:
    """Rows of ``old`` in the order of ``new``'s official test indices; a different set of
    test images (or classes) is a :class:`ConfigError` naming both runs."""
    if sorted(new.index.tolist()) != sorted(old.index.tolist()):
        only_new = np.setdiff1d(new.index, old.index)
        only_old = np.setdiff1d(old.index, new.index)
        raise ConfigError(
            f"checks.baseline: {old_dir} was tested on other images than {new_dir} "
            f"({len(old.index)} vs {len(new.index)} images; {len(only_new)} only in the run, "
            f"{len(only_old)} only in the baseline, e.g. index "
            f"{(only_new.tolist() or only_old.tolist())[:3]}); compare runs on the same test set"
        )
    if new.class_names != old.class_names:
        raise ConfigError(
            f"checks.baseline: {old_dir} has classes {list(old.class_names)}, "
            f"{new_dir} has {list(new.class_names)}"
        )
    pos = {int(i): k for k, i in enumerate(old.index)}
    return np.array([pos[int(i)] for i in new.index], dtype=np.int64)


def _class_accuracy(correct: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    support = np.bincount(labels, minlength=k)
    hits = np.bincount(labels, weights=correct.astype(np.float64), minlength=k)
    return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def _ece(p: SavedPredictions) -> float:
    return expected_calibration_error(torch.from_numpy(p.probs), torch.from_numpy(p.labels))


def comparison(
    new: SavedPredictions, old: SavedPredictions, order: np.ndarray, confidence: float
) -> dict[str, Any]:
    """The numbers every baseline check reads (``order`` from :func:`aligned`): counts of
    fixed and broken images, the exact McNemar p-value, the negative flip rate, per-class
    accuracy (fractions) and drops (points), ECE of both, and every broken image with both
    predictions and confidences, most confident new error first."""
    names = new.class_names
    old_probs, old_correct = old.probs[order], old.correct[order]
    new_correct, labels = new.correct, new.labels
    broken = negative_flips(old_correct, new_correct)
    fixed = ~old_correct & new_correct
    new_conf, old_conf = new.probs.max(axis=1), old_probs.max(axis=1)
    k = len(names)
    acc_old, acc_new = _class_accuracy(old_correct, labels, k), _class_accuracy(new_correct, labels, k)
    drops = {names[c]: float((acc_old[c] - acc_new[c]) * 100) for c in range(k) if np.isfinite(acc_old[c])}
    rows = np.flatnonzero(broken)
    rows = rows[np.argsort(-new_conf[rows], kind="stable")]
    cases = [
        {
            "index": int(new.index[r]),
            "true": names[labels[r]],
            "baseline_pred": names[int(old_probs[r].argmax())],
            "baseline_confidence": float(old_conf[r]),
            "pred": names[int(new.preds[r])],
            "confidence": float(new_conf[r]),
        }
        for r in rows
    ]
    n = len(labels)
    return {
        "n_images": n,
        "accuracy": float(new_correct.mean()) if n else float("nan"),
        "baseline_accuracy": float(old_correct.mean()) if n else float("nan"),
        "fixed": int(fixed.sum()),
        "broken": int(broken.sum()),
        "mcnemar_p": mcnemar_exact(int(fixed.sum()), int(broken.sum())),
        "negative_flip_rate": float(broken.sum() / n) if n else 0.0,
        "confidence": confidence,
        "confident_broken": int((new_conf[broken] >= confidence).sum()),
        "class_drop_points": drops,
        "ece": _ece(new),
        "baseline_ece": _ece(old),
        "broken_cases": cases,
    }


def _record(name: str, condition: str, value: float, passed: bool, message: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "baseline",
        "condition": condition,
        "value": value,
        "passed": passed,
        "message": message,
    }


def baseline_checks(c: dict[str, Any], rules: BaselineRules) -> list[dict[str, Any]]:
    """One record per rule of ``rules`` that is not ``None``, read from :func:`comparison`."""
    out = []
    if rules.alpha is not None:
        worse = c["broken"] > c["fixed"] and c["mcnemar_p"] < rules.alpha
        out.append(
            _record(
                "baseline.accuracy",
                f"not lower beyond noise (exact McNemar, alpha {rules.alpha:g})",
                c["accuracy"] - c["baseline_accuracy"],
                not worse,
                f"accuracy {c['accuracy']:.4f} vs baseline {c['baseline_accuracy']:.4f}: {c['fixed']} fixed, "
                f"{c['broken']} broken, McNemar p = {c['mcnemar_p']:.3g}",
            )
        )
    if rules.max_negative_flip_rate is not None:
        nfr = c["negative_flip_rate"]
        out.append(
            _record(
                "baseline.negative_flip_rate",
                f"<= {rules.max_negative_flip_rate:g}",
                nfr,
                nfr <= rules.max_negative_flip_rate,
                f"negative flip rate {nfr:.4f} ({c['broken']} of {c['n_images']} images broken), "
                f"required <= {rules.max_negative_flip_rate:g}",
            )
        )
    if rules.max_confident_broken is not None:
        n = c["confident_broken"]
        out.append(
            _record(
                "baseline.confident_broken",
                f"<= {rules.max_confident_broken} with confidence >= {rules.confidence:g}",
                n,
                n <= rules.max_confident_broken,
                f"{n} images the baseline got right are now wrong with confidence >= {rules.confidence:g}, "
                f"required <= {rules.max_confident_broken}",
            )
        )
    if rules.max_class_drop is not None and c["class_drop_points"]:
        cls, drop = max(c["class_drop_points"].items(), key=lambda kv: kv[1])
        out.append(
            _record(
                "baseline.class_drop",
                f"<= {rules.max_class_drop:g} points",
                drop,
                drop <= rules.max_class_drop,
                (
                    f"largest per-class accuracy drop {drop:.2f} points ({cls})"
                    if drop > 0
                    else f"no class lost accuracy (the smallest gain: {-drop:.2f} points, {cls})"
                )
                + f", required drop <= {rules.max_class_drop:g} points",
            )
        )
    if rules.max_ece_increase is not None:
        inc = c["ece"] - c["baseline_ece"]
        out.append(
            _record(
                "baseline.ece_increase",
                f"<= {rules.max_ece_increase:g}",
                inc,
                inc <= rules.max_ece_increase,
                f"ECE {c['ece']:.4f} vs baseline {c['baseline_ece']:.4f} ({inc:+.4f}), "
                f"required increase <= {rules.max_ece_increase:g}",
            )
        )
    return out


def baseline_dir(rules: BaselineRules) -> Path:
    """The baseline run directory; a missing directory or predictions file is a ConfigError."""
    path = Path(rules.run)
    if not (path / FILENAME).is_file():
        raise ConfigError(f"checks.baseline: {path} is not a finished run directory (no {FILENAME})")
    return path


def compare_to_baseline(run: RunDir, rules: BaselineRules) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The comparison record (with ``baseline``: its path) and the check records."""
    old_dir = baseline_dir(rules)
    new = load_predictions(run.path / FILENAME)
    old = load_predictions(old_dir / FILENAME)
    c = comparison(new, old, aligned(new, old, run.path, old_dir), rules.confidence)
    c["baseline"] = str(old_dir)
    return c, baseline_checks(c, rules)
