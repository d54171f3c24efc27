"""Evaluate a ``checks:`` section on a finished run directory, without rerunning anything."""

from __future__ import annotations

import difflib
import fnmatch
import math
from pathlib import Path
from typing import Any

from stresslab.errors import ConfigError
from stresslab.files import read_json
from stresslab.report.render import flat_metrics
from stresslab.runs.checks.baseline import compare_to_baseline
from stresslab.runs.checks.spec import ChecksConfig, Condition
from stresslab.runs.directory import RunDir
from stresslab.runs.storage import load_results

CLASS_FIELDS = ("support", "accuracy", "precision", "recall", "f1")


def metric_values(run: RunDir) -> dict[str, float]:
    """Every checkable value of ``run``: the flat keys of ``metrics.json`` (made from the saved
    probe results, so they exist before the report is written), plus
    ``evaluation.class.<class>.<field>`` from the evaluation probe's per-class table."""
    results = load_results(run)
    values: dict[str, float] = {k: float(v) for k, v in flat_metrics(results).items()}
    per_class = results.get("evaluation", {}).get("data", {}).get("per_class", {})
    for name, rec in per_class.items():
        for f in CLASS_FIELDS:
            if f in rec and rec[f] is not None:
                values[f"evaluation.class.{name}.{f}"] = float(rec[f])
    return values


def run_warnings(run: RunDir) -> list[tuple[str, str]]:
    """``(kind, message)`` for every warning of the run: the run's own (kind ``data``,
    ``training``) and each probe's (kind: the probe's name), as the report lists them."""
    own = read_json(run.run_warnings) if run.run_warnings.is_file() else []
    out = [(str(w.get("source", "run")), str(w.get("message", ""))) for w in own]
    for name, rec in load_results(run).items():
        out += [(name, str(w)) for w in rec.get("warnings", [])]
    return out


def match_keys(pattern: str, keys: list[str]) -> list[str]:
    """Keys matching ``pattern`` (``*``/``?`` wildcards), in ``keys``' order; an unknown key or
    a pattern matching nothing is a :class:`ConfigError` naming the closest keys."""
    if any(c in pattern for c in "*?["):
        found = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
    else:
        found = [pattern] if pattern in keys else []
    if not found:
        close = difflib.get_close_matches(pattern, keys, n=3, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ConfigError(f"checks: unknown metric key {pattern!r}{hint}")
    return found


def _metric_check(key: str, pattern: str, cond: Condition, value: float) -> dict[str, Any]:
    passed = cond.holds(value)
    shown = f"{value:.6g}" if math.isfinite(value) else "not measured"
    return {
        "name": key,
        "kind": "metric",
        "pattern": pattern,
        "condition": str(cond),
        "value": value,
        "passed": passed,
        "message": f"{key} = {shown}, required {cond}",
    }


def _warnings_check(rule: str | list[str], found: list[tuple[str, str]]) -> dict[str, Any]:
    bad = found if rule == "none" else [(k, m) for k, m in found if k in rule]
    what = "no warnings" if rule == "none" else f"no warnings of kind {', '.join(rule)}"
    shown = "; ".join(f"[{k}] {m}" for k, m in bad[:5]) + (" ..." if len(bad) > 5 else "")
    return {
        "name": "warnings",
        "kind": "warnings",
        "condition": what,
        "value": len(bad),
        "passed": not bad,
        "message": f"{len(bad)} warning(s), required {what}" + (f": {shown}" if bad else ""),
        "warnings": [{"kind": k, "message": m} for k, m in bad],
    }


def resolve_checks(run: RunDir, checks: ChecksConfig) -> list[tuple[str, str, Condition]]:
    """``(key, pattern, condition)`` for every metric check, wildcards expanded; raises
    :class:`ConfigError` on an unknown key before anything is evaluated or written."""
    keys = list(metric_values(run))
    return [(k, pat, cond) for pat, cond in checks.parsed().items() for k in match_keys(pat, keys)]


def evaluate_checks(run_dir: str | Path | RunDir, checks: ChecksConfig) -> dict[str, Any]:
    """Every check of ``checks`` on the run (and against ``checks.baseline`` when given), as
    the record ``checks.json`` holds: ``passed``, ``n_checks``, ``n_failed``, ``checks`` (one
    record per condition: name, kind, condition, value, passed, message) and ``baseline``
    (the comparison, with every broken image) or None. Raises before computing anything
    when a key is unknown or the baseline's test images differ."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    resolved = resolve_checks(run, checks)
    values = metric_values(run)
    records = [_metric_check(k, pat, cond, values[k]) for k, pat, cond in resolved]
    if checks.warnings is not None:
        records.append(_warnings_check(checks.warnings, run_warnings(run)))
    comparison = None
    if checks.baseline is not None:
        comparison, baseline_records = compare_to_baseline(run, checks.baseline)
        records += baseline_records
    failed = sum(not r["passed"] for r in records)
    return {
        "run": str(run.path),
        "passed": failed == 0,
        "n_checks": len(records),
        "n_failed": failed,
        "checks": records,
        "baseline": comparison,
    }
