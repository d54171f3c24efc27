"""A study's ``checks:``: each arm's runs checked on their own, and each against the run of
the baseline arm (``compare_to``) with the same seed, on the same test images."""

from __future__ import annotations

from typing import Any

from stresslab.errors import StresslabError
from stresslab.runs.checks import evaluate_checks, parse_checks
from stresslab.study.aggregate import RunData
from stresslab.study.spec import StudySpec

BROKEN_KEPT = 20  # broken images kept per run in study.json (the full list: `stresslab check`)


def _one(rd: RunData, spec: StudySpec, base: RunData | None) -> dict[str, Any]:
    raw = dict(spec.checks)
    rules = raw.pop("baseline", {}) or {}
    baseline = {**rules, "run": str(base.path)} if base is not None else None
    try:
        outcome = evaluate_checks(rd.path, parse_checks({**raw, "baseline": baseline}, spec.source))
    except StresslabError as e:
        return {"passed": False, "error": str(e), "n_checks": 0, "n_failed": 0, "checks": []}
    if outcome["baseline"]:
        outcome["baseline"]["broken_cases"] = outcome["baseline"]["broken_cases"][:BROKEN_KEPT]
    return outcome


def study_checks(spec: StudySpec, runs: dict[str, dict[int, RunData]]) -> dict[str, Any]:
    """``{"passed", "arms": {arm: {"passed", "seeds": {seed: outcome}}}}`` for every usable run
    (outcomes as ``checks.json``; an unevaluable one holds ``error``); ``{}`` without checks.
    The baseline arm is checked against its conditions only."""
    if not spec.checks:
        return {}
    arms: dict[str, Any] = {}
    for arm, seeds in runs.items():
        out: dict[str, Any] = {}
        for seed, rd in seeds.items():
            if not rd.usable:
                continue
            base = runs.get(spec.compare_to, {}).get(seed)
            use_base = arm != spec.compare_to and base is not None and base.usable
            out[str(seed)] = _one(rd, spec, base if use_base else None)
        arms[arm] = {"passed": all(o["passed"] for o in out.values()), "seeds": out}
    return {"passed": all(a["passed"] for a in arms.values()), "arms": arms}
