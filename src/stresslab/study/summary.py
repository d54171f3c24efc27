"""The study's findings as plain data (``study.json``): arms x metrics with intervals, the
differences to the baseline, the same test images followed across arms, deep ensembles,
per-class deltas, learning curves and, for a grid, cost against accuracy."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from stresslab.metrics.calibration import expected_calibration_error
from stresslab.metrics.differences import holm, t_interval
from stresslab.metrics.power import detectable_difference, detectable_flip_difference
from stresslab.study import compare as C
from stresslab.study.aggregate import METRICS, Metric, RunData, class_accuracy, run_value
from stresslab.study.spec import StudySpec

CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")
SPLIT_KEYS = ("dataset", "split_seed", "val_fraction", "train_subset", "test_subset")


def _diff(
    arm: dict[int, float | None], base: dict[int, float | None], m: Metric, unpaired_because: str
) -> dict[str, Any]:
    """``arm - base`` for one metric, the method and why, the minimum detectable difference
    at 80% power for these seeds, and the verdict in words."""
    d, why = C.seed_difference(arm, base, m.bounds, unpaired_because)
    mdd = detectable_difference(d.sd, d.n)
    return {
        **asdict(d),
        "within_noise": d.within_noise,
        "why": why,
        "detectable": mdd,
        "words": C.describe(d, m.label, m.percent, m.higher_is_better, mdd),
    }


def unpaired_because(spec: StudySpec, arm: str) -> str:
    """Why seed s of ``arm`` does not pair with seed s of the baseline ("" when it does):
    an arm that changes the data split or the training subset sees other images."""
    if not spec.seeds:
        return ""
    seed = spec.seeds[0]
    mine, theirs = spec.config(arm, seed).data, spec.config(spec.compare_to, seed).data
    changed = [k for k in SPLIT_KEYS if getattr(mine, k, None) != getattr(theirs, k, None)]
    if changed:
        keys = ", ".join(f"data.{k}" for k in changed)
        return f"the arm changes {keys}, so its seed s does not share the baseline's data split"
    return ""


def summarize(
    spec: StudySpec, runs: dict[str, dict[int, RunData]], costs: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """Everything the study report shows, JSON-safe (NaN is written as null)."""
    base = spec.compare_to
    usable = {arm: {s: r for s, r in seeds.items() if r.usable} for arm, seeds in runs.items()}
    preds = [r.preds for seeds in usable.values() for r in seeds.values() if r.preds is not None]
    common = C.align([p.index for p in preds])
    names: list[str] = list(preds[0].class_names) if preds else []

    correct: dict[str, dict[int, np.ndarray]] = {}
    p_true: dict[str, dict[int, np.ndarray]] = {}
    probs: dict[str, dict[int, np.ndarray]] = {}
    labels = np.zeros(0, dtype=np.int64)
    for arm, seeds in usable.items():
        correct[arm], p_true[arm], probs[arm] = {}, {}, {}
        for s, r in seeds.items():
            p = r.preds
            assert p is not None
            labels = C.take(p.index, p.labels, common)
            correct[arm][s] = C.take(p.index, p.correct, common)
            probs[arm][s] = C.take(p.index, p.probs, common)
            p_true[arm][s] = probs[arm][s][np.arange(len(common)), labels]

    out: dict[str, Any] = {
        "name": spec.name,
        "baseline": base,
        "seeds": list(spec.seeds),
        "arms_order": list(spec.arms),
        "class_names": names,
        "n_test_common": len(common),
        "runs": [
            {
                "arm": r.arm,
                "seed": r.seed,
                "state": r.state,
                "error": r.error,
                "failed_probes": r.failed_probes,
                "usable": r.usable,
            }
            for seeds in runs.values()
            for r in seeds.values()
        ],
        "costs": costs,
    }
    params = {arm: c["params"] for arm, c in costs.items()}
    arms_out: dict[str, Any] = {}
    for arm, seeds in usable.items():
        values = {m.key: {s: run_value(r, m, params) for s, r in seeds.items()} for m in METRICS}
        rec: dict[str, Any] = {"n_done": len(seeds), "metrics": {}, "vs_baseline": {}}
        for m in METRICS:
            vals = [v for v in values[m.key].values() if v is not None]
            rec["metrics"][m.key] = {
                "values": {str(s): v for s, v in values[m.key].items()},
                **asdict(t_interval(vals, bounds=m.bounds)),
            }
            if arm != base and base in usable:
                bvals = {s: run_value(r, m, params) for s, r in usable[base].items()}
                if vals and any(v is not None for v in bvals.values()):
                    rec["vs_baseline"][m.key] = _diff(values[m.key], bvals, m, unpaired_because(spec, arm))
        rec["ensemble"] = _ensemble(probs.get(arm, {}), labels)
        rec["overfitting"] = {
            "verdicts": {str(s): r.overfitting for s, r in seeds.items()},
            "onsets": {str(s): r.overfitting_onset for s, r in seeds.items()},
        }
        arms_out[arm] = rec
    out["arms"] = arms_out
    out["cases"] = {arm: _cases(correct, p_true, base, arm, common) for arm in usable if arm != base}
    causes = {arm: {s: r.causes for s, r in seeds.items()} for arm, seeds in usable.items()}
    out["cause_cases"] = {
        arm: _cause_cases(correct, causes, base, arm, common) for arm in usable if arm != base
    }
    every = [c for seeds in correct.values() for c in seeds.values()]
    hard = np.logical_and.reduce([~c for c in every]) if every else np.zeros(0, bool)
    out["hard_core"] = {"indices": common[hard].tolist(), "n_runs": len(every)}
    out["churn"] = {arm: C.churn(list(correct[arm].values())) for arm in correct}
    out["per_class"] = _per_class(spec, usable, names, common)
    out["curves"] = {arm: _curves([r.history for r in seeds.values()]) for arm, seeds in usable.items()}
    if spec.grid_keys:
        out["grid"] = _grid(spec, arms_out, costs)
    return out


def _ensemble(members: dict[int, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Deep ensemble of an arm's seeds (Lakshminarayanan et al. 2017): mean probabilities."""
    if not members:
        return {"n_members": 0}
    mean = np.mean(np.stack(list(members.values())), axis=0)
    acc = float((mean.argmax(1) == labels).mean()) if len(labels) else float("nan")
    ece = expected_calibration_error(torch.from_numpy(mean), torch.from_numpy(labels))
    return {"n_members": len(members), "accuracy": acc, "ece": ece}


def _cases(
    correct: dict[str, dict[int, np.ndarray]],
    p_true: dict[str, dict[int, np.ndarray]],
    base: str,
    arm: str,
    common: np.ndarray,
) -> dict[str, Any]:
    seeds = sorted(set(correct.get(base, {})) & set(correct.get(arm, {})))
    pairs = []
    fixed_all, broken_all, still_all = [], [], []
    for s in seeds:
        t = C.transitions(correct[base][s], correct[arm][s])
        c = t.counts
        pairs.append({"seed": s, **c, "mcnemar_p": C.mcnemar_exact(c["fixed"], c["broken"])})
        fixed_all.append(t.fixed)
        broken_all.append(t.broken)
        still_all.append(t.still_wrong)
    if not seeds:
        return {"pairs": [], "seeds": [], "words": "no seed has finished in both this arm and the baseline"}

    def every(masks: list[np.ndarray]) -> np.ndarray:
        return np.logical_and.reduce(masks)

    gain = np.mean([p_true[arm][s] - p_true[base][s] for s in seeds], axis=0)
    fixed, broken = every(fixed_all), every(broken_all)
    noise = C.churn(list(correct[base].values()))
    mean_fixed = float(np.mean([p["fixed"] for p in pairs]))
    mean_broken = float(np.mean([p["broken"] for p in pairs]))
    significant = sum(p["mcnemar_p"] < 0.05 for p in pairs)
    pooled = C.pooled_mcnemar([int(p["fixed"]) for p in pairs], [int(p["broken"]) for p in pairs])
    rate = (pooled.fixed + pooled.broken) / (len(common) * len(pairs)) if len(common) else 0.0
    detectable = detectable_flip_difference(rate, len(common), len(pairs))
    words = (
        f"{arm} fixes {mean_fixed:.1f} and breaks {mean_broken:.1f} test images per seed pair on average "
        f"(McNemar p < 0.05 in {significant} of {len(pairs)} seed pairs; pooled over the seed pairs, "
        f"{pooled.fixed} fixed against {pooled.broken} broken, stratified exact p = {pooled.p_value:.3g}); "
        f"{int(fixed.sum())} are fixed and {int(broken.sum())} broken in every seed."
    )
    if noise is not None:
        fixes = "more than" if mean_fixed > noise else "no more than"
        breaks = "more than" if mean_broken > noise else "no more than"
        words += (
            f" Two seeds of {base} itself 'fix' (and 'break') {noise:.1f} images on average, so the "
            f"fixes are {fixes} seed noise and the breaks {breaks} seed noise."
        )
    order_fix = np.argsort(-gain[fixed]) if fixed.any() else np.zeros(0, int)
    order_break = np.argsort(gain[broken]) if broken.any() else np.zeros(0, int)
    return {
        "seeds": seeds,
        "pairs": pairs,
        "consistent": {
            "fixed": common[fixed][order_fix].tolist(),
            "broken": common[broken][order_break].tolist(),
            "still_wrong": int(every(still_all).sum()),
        },
        "mean_fixed": mean_fixed,
        "mean_broken": mean_broken,
        "pooled": {**asdict(pooled), "discordant_rate": rate, "detectable": detectable},
        "noise_floor": noise,
        "words": words,
    }


def _cause_cases(
    correct: dict[str, dict[int, np.ndarray]],
    causes: dict[str, dict[int, dict[int, str]]],
    base: str,
    arm: str,
    common: np.ndarray,
) -> dict[str, Any]:
    """Fixed / broken / still wrong per cause slice of the baseline's failures (its runs'
    ``diagnosis.csv``), per seed pair and as means over the seed pairs with a diagnosis."""
    seeds = [
        s
        for s in sorted(set(correct.get(base, {})) & set(correct.get(arm, {})))
        if causes[base].get(s) and causes[arm].get(s) is not None
    ]
    per_seed = {
        s: C.cause_transitions(correct[base][s], correct[arm][s], common, causes[base][s], causes[arm][s])
        for s in seeds
    }
    rows = []
    for cause in sorted({c for rec in per_seed.values() for c in rec}):
        recs = [
            per_seed[s].get(cause, {"n": 0, "fixed": 0, "broken": 0, "still_wrong": 0, "mcnemar_p": 1.0})
            for s in seeds
        ]
        mean = {k: float(np.mean([r[k] for r in recs])) for k in ("n", "fixed", "broken", "still_wrong")}
        p_values = [float(r["mcnemar_p"]) for r in recs]
        significant = sum(p < 0.05 for p in p_values)
        words = (
            f"of the {mean['n']:.1f} {cause} failures of {base}, {arm} fixed {mean['fixed']:.1f} and broke "
            f"{mean['broken']:.1f} (McNemar p < 0.05 in {significant} of {len(seeds)} seed pairs; "
            f"p = {', '.join(f'{p:.2g}' for p in p_values)})"
        )
        rows.append(
            {"cause": cause, **mean, "mcnemar_p": p_values, "significant": significant, "words": words}
        )
    return {"seeds": seeds, "causes": rows}


def _per_class(
    spec: StudySpec, usable: dict[str, dict[int, RunData]], names: list[str], common: np.ndarray
) -> dict[str, Any]:
    """Per-class accuracy per arm and, against the baseline, the per-class differences paired
    by seed; ``within_noise`` uses Holm's correction over the classes (family-wise 5%)."""
    base = spec.compare_to
    acc = {
        arm: {s: class_accuracy(r.preds, common) for s, r in seeds.items() if r.preds is not None}
        for arm, seeds in usable.items()
    }
    out: dict[str, Any] = {}
    for arm, rows in acc.items():
        if not rows:
            continue
        table: list[dict[str, Any]] = [
            {"class": name, "mean": t_interval([float(r[k]) for r in rows.values()]).mean}
            for k, name in enumerate(names)
        ]
        if arm != base and acc.get(base):
            because = unpaired_because(spec, arm)
            diffs = [
                C.seed_difference(
                    {s: float(r[k]) for s, r in rows.items()},
                    {s: float(r[k]) for s, r in acc[base].items()},
                    (0.0, 1.0),
                    because,
                )
                for k in range(len(names))
            ]
            adjusted = holm([d.p_value for d, _ in diffs])
            for entry, (d, why), p_holm in zip(table, diffs, adjusted, strict=True):
                within = None if p_holm is None or d.lo is None else bool(p_holm >= 0.05)
                entry.update(
                    diff=d.diff, lo=d.lo, hi=d.hi, p=d.p_value, p_holm=p_holm, within_noise=within, why=why
                )
        out[arm] = table
    return out


def _curves(histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    epochs = sorted({int(r["epoch"]) for h in histories for r in h})
    out: dict[str, Any] = {"epoch": epochs}
    for key in CURVES:
        means, stds = [], []
        for e in epochs:
            vals = [float(r[key]) for h in histories for r in h if int(r["epoch"]) == e and key in r]
            vals = [v for v in vals if np.isfinite(v)]
            means.append(float(np.mean(vals)) if vals else float("nan"))
            stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        out[key] = {"mean": means, "std": stds}
    return out


def _grid(spec: StudySpec, arms: dict[str, Any], costs: dict[str, dict[str, float]]) -> dict[str, Any]:
    rows = []
    for name, arm in spec.arms.items():
        if not arm.grid or name not in arms:
            continue
        acc = arms[name]["metrics"]["accuracy"]
        cost = costs.get(name, {})
        rows.append(
            {
                "arm": name,
                "values": arm.grid,
                "accuracy": acc["mean"],
                "accuracy_interval": {k: acc[k] for k in ("mean", "std", "lo", "hi")},
                "params": cost.get("params"),
                "flops": cost.get("flops"),
                "train_seconds": arms[name]["metrics"]["train_seconds"]["mean"],
            }
        )
    rows.sort(key=lambda r: -(r["accuracy"] if np.isfinite(r["accuracy"]) else -1.0))
    front = C.pareto_front(
        [r["flops"] if r["flops"] is not None else np.nan for r in rows], [r["accuracy"] for r in rows]
    )
    for r, f in zip(rows, front, strict=True):
        r["pareto"] = f
    return {"keys": list(spec.grid_keys), "rows": rows}
