"""Release gates: pass/fail checks on a run's metrics and warnings, and regression against a
baseline run, written as ``checks.json``, JUnit ``checks.xml`` and ``checks.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stresslab.errors import ConfigError
from stresslab.runs.checks.before import check_before_run
from stresslab.runs.checks.evaluate import evaluate_checks, metric_values
from stresslab.runs.checks.spec import BaselineRules, ChecksConfig, Condition
from stresslab.runs.checks.writers import JSON, write_outcome
from stresslab.runs.directory import RunDir

__all__ = [
    "BaselineRules",
    "ChecksConfig",
    "Condition",
    "check_before_run",
    "evaluate_checks",
    "load_outcome",
    "metric_values",
    "parse_checks",
    "run_checks",
]


def parse_checks(raw: Any, source: str = "checks", baseline: str | Path | None = None) -> ChecksConfig:
    """A :class:`ChecksConfig` from a ``checks:`` mapping; ``baseline`` (``--baseline DIR``)
    replaces the mapping's baseline run. Errors name ``source`` and the key."""
    raw = dict(raw or {})
    if baseline is not None:
        rules = raw.get("baseline")
        raw["baseline"] = {**rules, "run": str(baseline)} if isinstance(rules, dict) else str(baseline)
    try:
        return ChecksConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid checks\n" + "\n".join(lines)) from None


def run_checks(run_dir: str | Path | RunDir, checks: ChecksConfig) -> dict[str, Any]:
    """Evaluate ``checks`` on a finished run and write the three files (see
    :func:`evaluate_checks`); nothing is written when a key is unknown or the baseline's
    test images differ. Returns the outcome."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    outcome = evaluate_checks(run, checks)
    write_outcome(run, outcome)
    return outcome


def load_outcome(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN_DIR/checks.json`` read back, or None when no checks ran."""
    from stresslab.files import read_json

    path = Path(run_dir) / JSON
    return dict(read_json(path)) if path.is_file() else None
