"""``stresslab suggest RUN_DIR``: the study a run's diagnosis points to, written as a file
``stresslab study`` runs (see :mod:`stresslab.diagnosis.suggest` for the mapping)."""

from __future__ import annotations

from pathlib import Path

import yaml

from stresslab.diagnosis import suggest_study
from stresslab.errors import StresslabError
from stresslab.files import atomic_write_text, read_json, read_yaml
from stresslab.runs.directory import RunDir
from stresslab.study.spec import parse_study


def write_suggested_study(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write the suggested study of the run in ``run_dir`` to ``out`` (default
    ``RUN_DIR/suggested_study.yaml``) after validating it as ``stresslab study`` would;
    returns the path and the reasons behind its arms."""
    run = RunDir.open(run_dir)
    diag = run.result_json("diagnosis")
    if not diag.is_file():
        raise StresslabError(f"{diag} is missing: the run has no diagnosis (it needs the evaluation probe)")
    issues, corruption = run.result_json("label_issues"), run.result_json("corruption")
    study, reasons = suggest_study(
        read_yaml(run.config),
        read_json(diag),
        read_json(issues) if issues.is_file() else None,
        read_json(corruption) if corruption.is_file() else None,
        name=f"{run.path.name}-suggested",
    )
    parse_study(study, source=f"suggested study of {run.path}")
    target = Path(out) if out is not None else run.path / "suggested_study.yaml"
    header = "".join(f"# {line}\n" for line in [f"Suggested by `stresslab suggest {run.path}`:", *reasons])
    atomic_write_text(target, header + yaml.safe_dump(study, sort_keys=False))
    return target, reasons
