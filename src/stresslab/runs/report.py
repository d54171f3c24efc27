"""Rebuild ``report.html`` and ``metrics.json`` from a run directory alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stresslab.files import atomic_write_json, atomic_write_text, read_json, read_yaml
from stresslab.report.render import data_uri, flat_metrics, headline_cards, render_template
from stresslab.runs.directory import RunDir
from stresslab.runs.storage import load_results

DIAGNOSIS = "diagnosis"
MAX_SUMMARY = 10


def _section(run: RunDir, name: str, rec: dict[str, Any]) -> dict[str, Any]:
    """One saved record as the report shows it: figures as data URIs, metric rows."""
    figures = []
    for f in rec.get("figures", []):
        path = run.results / f["file"]
        if path.is_file():
            figures.append({"src": data_uri(path), "caption": f.get("caption", ""), "name": f["file"]})
    metric_rows = [[f"{name}.{k}", v] for k, v in rec.get("metrics", {}).items()]
    return {"name": name, "rec": rec, "figures": figures, "metric_rows": metric_rows}


def report_context(run: RunDir) -> dict[str, Any]:
    """Everything the report shows, read from the run directory: title, config, environment,
    summary cards, warnings (the run's own first), the diagnosis (which opens the report and
    gives the summary of at most 10 lines, when it ran), one entry per probe section (its saved
    record and figures as data URIs), failed probes and whether the run is complete. The
    report template and the notebook view (:mod:`stresslab.runs.inline`) both render it."""
    results = load_results(run)
    metrics = flat_metrics(results)
    cfg: dict[str, Any] = {}
    if run.config.is_file():
        cfg = read_yaml(run.config)
    env_rec = read_json(run.env) if run.env.is_file() else {}
    failed = {name: read_json(run.failure_file(name)).get("error", "") for name in run.failed_probes()}
    sections = [_section(run, name, rec) for name, rec in results.items()]
    # The diagnosis opens the report and gives its summary; the probes' lines stay in their sections.
    diagnosis = next((s for s in sections if s["name"] == DIAGNOSIS), None)
    sections = [s for s in sections if s["name"] != DIAGNOSIS]
    if diagnosis is not None:
        summary = [(DIAGNOSIS, line) for line in diagnosis["rec"].get("summary", [])]
    else:
        summary = [(s["name"], line) for s in sections for line in s["rec"].get("summary", [])]
    # Run-level warnings (training divergence, the data split) come before the probes' own.
    run_warnings = read_json(run.run_warnings) if run.run_warnings.is_file() else []
    warnings = [(str(w.get("source", "run")), str(w.get("message", ""))) for w in run_warnings]
    warnings += [(s["name"], w) for s in sections for w in s["rec"].get("warnings", [])]
    return {
        "metrics": metrics,
        "title": f"stresslab report: {cfg.get('name') or run.path.name}",
        "run_name": run.path.name,
        "cfg": cfg,
        "cfg_yaml": yaml.safe_dump(cfg, sort_keys=False),
        "env": env_rec,
        "headlines": headline_cards(results, metrics),
        "summary": summary[:MAX_SUMMARY],
        "diagnosis": diagnosis,
        "warnings": warnings,
        "sections": sections,
        "failed": failed,
        "run_failed": read_json(run.failed) if run.failed.is_file() else None,
        "complete": run.done.is_file() or not (failed or run.failed.is_file()),
        **_gates(run),
    }


def _gates(run: RunDir) -> dict[str, Any]:
    """The checks' outcome (``checks.json``, None when no checks ran) and the model card."""
    from stresslab.runs.card import model_card
    from stresslab.runs.checks import load_outcome

    return {"checks": load_outcome(run.path), "card": model_card(run)}


def render(run_dir: str | Path | RunDir) -> dict[str, float]:
    """Write ``report.html`` (self-contained) and ``metrics.json`` (flat, strict JSON).

    Returns the flat metrics. Everything from data is escaped by the template engine.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    context = report_context(run)
    atomic_write_json(run.metrics, context["metrics"])
    atomic_write_text(run.report, render_template("report.html.j2", **context))
    metrics: dict[str, float] = context["metrics"]
    return metrics
