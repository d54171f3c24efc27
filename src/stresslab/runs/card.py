"""A model card (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019; the sections
follow Google's Model Card Toolkit) made from a run directory alone.

:func:`model_card` gathers the card as plain sections (lines and tables);
:func:`card_markdown` writes it as Markdown and the report shows the same sections as HTML.
The numbers are ``metrics.json``'s; the 95% intervals are percentile bootstraps over the
saved per-image predictions (``predictions.npz``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stresslab.files import atomic_write_text, read_json
from stresslab.metrics.bootstrap import (
    bootstrap_interval,
    ece_columns,
    ece_from_sums,
    f1_columns,
    macro_f1_from_sums,
)
from stresslab.runs.directory import RunDir
from stresslab.runs.saved_predictions import FILENAME, load_predictions
from stresslab.runs.storage import load_results
from stresslab.settings import Strict

NOT_STATED = "not stated (set it in the config's `card:` section)"
RESAMPLES = 1000
ROBUSTNESS_SHOWN = 16


class CardConfig(Strict):
    """The card's fields a person fills in (the ``card:`` config section); the rest is measured."""

    intended_use: str | None = None
    out_of_scope_use: str | None = None
    owners: str | None = None
    license: str | None = None
    limitations: str | None = None
    ethical_considerations: str | None = None


@dataclass
class CardTable:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class CardSection:
    """One card section: a title, plain-text lines and tables (all cells already text)."""

    title: str
    lines: list[str] = field(default_factory=list)
    tables: list[CardTable] = field(default_factory=list)


def _num(v: Any, percent: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if percent:
        return f"{float(v):.2%}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metric_intervals(
    probs: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES
) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap intervals (seed 0) of accuracy, macro F1 and ECE (15 bins)
    from per-image ``probs`` (N, K) and ``labels`` (N,)."""
    preds = probs.argmax(axis=1)
    correct = (preds == labels).astype(np.float64)
    n = len(labels)
    return {
        "evaluation.accuracy": bootstrap_interval(correct, resamples=resamples),
        "evaluation.macro_f1": bootstrap_interval(
            f1_columns(labels, preds, probs.shape[1]), macro_f1_from_sums, resamples=resamples
        ),
        "calibration.ece": bootstrap_interval(
            ece_columns(probs.max(axis=1).astype(np.float64), correct),
            lambda sums: ece_from_sums(sums, n),
            resamples=resamples,
        ),
    }


def _read(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


class _Run:
    """What the card reads from a run directory, each file once."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.path
        self.cfg: dict[str, Any] = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
        self.env: dict[str, Any] = _read(run.env) or {}
        self.metrics: dict[str, float] = _read(run.metrics) or {}
        self.history: list[dict[str, Any]] = _read(run.history) or []
        self.checks: dict[str, Any] | None = _read(run.path / "checks.json")
        self.results = load_results(run)
        preds = run.path / FILENAME
        self.predictions = load_predictions(preds) if preds.is_file() else None

    def data(self, probe: str) -> dict[str, Any]:
        return dict(self.results.get(probe, {}).get("data", {}))

    def probe_metrics(self, probe: str) -> list[tuple[str, float]]:
        prefix = f"{probe}."
        return [(k, v) for k, v in self.metrics.items() if k.startswith(prefix)]


def _details(r: _Run) -> CardSection:
    cfg, env = r.cfg, r.env
    model, data, train = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    sec = CardSection("Model details")
    sec.lines.append(
        f"Architecture: `{model.get('name', '?')}`"
        + (f" with arguments {model['args']}" if model.get("args") else "")
        + "."
    )
    if model.get("source") or model.get("weights"):
        sec.lines.append(f"Code or weights from: {model.get('source') or model.get('weights')}.")
    subsets = ", ".join(f"{k} {data[k]}" for k in ("train_subset", "test_subset") if data.get(k))
    sec.lines.append(
        f"Data: `{data.get('dataset', '?')}`"
        + (f" ({subsets})" if subsets else "")
        + f", validation fraction {data.get('val_fraction', '?')}, split seed {data.get('split_seed', '?')}."
    )
    seconds = sum(float(h.get("seconds") or 0.0) for h in r.history)
    if r.history:
        sec.lines.append(
            f"Training: {len(r.history)} epochs of {train.get('epochs', '?')} planned, "
            f"optimizer {train.get('optimizer', '?')}, learning rate {train.get('lr', '?')}, "
            f"batch size {train.get('batch_size', '?')}, label smoothing {train.get('label_smoothing', 0)}, "
            f"seed {cfg.get('seed', '?')}; {seconds:.0f} s of training."
        )
    else:
        sec.lines.append(f"Training: none in this run (a given model); probe seed {cfg.get('seed', '?')}.")
    hardware = (
        env.get("gpu")
        or f"{env.get('device', '?')}, {env.get('torch_threads', '?')} threads of "
        f"{env.get('cpu_count', '?')} CPUs"
    )
    sec.lines.append(
        f"Hardware: {hardware}. Software: torch {env.get('torch', '?')}, "
        f"stresslab {env.get('stresslab', '?')}"
        + (f" ({str(env['git_sha'])[:10]})" if env.get("git_sha") else "")
        + f". Created {env.get('created', '?')}."
    )
    return sec


def _user_fields(r: _Run) -> CardSection:
    fields = CardConfig.model_validate(r.cfg.get("card") or {})
    sec = CardSection("Intended use")
    for label, value in (
        ("Intended use", fields.intended_use),
        ("Out-of-scope use", fields.out_of_scope_use),
        ("Owners", fields.owners),
        ("License", fields.license),
        ("Limitations", fields.limitations),
        ("Ethical considerations", fields.ethical_considerations),
    ):
        if value or label in ("Intended use", "Out-of-scope use"):
            sec.lines.append(f"{label}: {value or NOT_STATED}")
    return sec


def _metrics(r: _Run) -> CardSection:
    sec = CardSection("Metrics")
    shown = [
        ("evaluation.accuracy", "accuracy", True),
        ("evaluation.macro_f1", "macro F1", False),
        ("calibration.ece", "ECE (15 bins)", False),
    ]
    intervals: dict[str, tuple[float, float]] = {}
    if r.predictions is not None and len(r.predictions.labels):
        intervals = metric_intervals(r.predictions.probs, r.predictions.labels)
        sec.lines.append(
            f"On {len(r.predictions.labels)} test images; 95% intervals are percentile bootstraps "
            f"({RESAMPLES} resamples of the test images, seed 0)."
        )
    rows = []
    for key, label, pct in shown:
        if key in r.metrics:
            lo, hi = intervals.get(key, (float("nan"), float("nan")))
            ci = f"{_num(lo, pct)} to {_num(hi, pct)}" if math.isfinite(lo) else "–"
            rows.append([label, f"`{key}`", _num(r.metrics[key], pct), ci])
    if rows:
        sec.tables.append(CardTable(["metric", "key", "value", "95% interval"], rows))
    per_class = r.data("evaluation").get("per_class", {})
    if per_class:
        sec.tables.append(
            CardTable(
                ["class", "support", "accuracy", "precision", "recall", "F1"],
                [
                    [
                        str(n),
                        _num(c.get("support")),
                        _num(c.get("accuracy"), True),
                        _num(c.get("precision")),
                        _num(c.get("recall")),
                        _num(c.get("f1")),
                    ]
                    for n, c in per_class.items()
                ],
            )
        )
    return sec


def _shown_metrics(r: _Run, probe: str) -> list[tuple[str, float]]:
    """The probe's headline metrics first, then the others (no after-temperature twins)."""
    heads = [f"{probe}.{h['metric']}" for h in r.results.get(probe, {}).get("headlines", [])]
    found = dict(r.probe_metrics(probe))
    keys = [k for k in heads if k in found]
    keys += [k for k in found if k not in keys and not k.endswith("_after_temperature")]
    return [(k, found[k]) for k in keys[:ROBUSTNESS_SHOWN]]


def _metric_table(title: str, r: _Run, probes: tuple[str, ...], empty: str) -> CardSection:
    sec = CardSection(title)
    rows = [[f"`{k}`", _num(v)] for p in probes for k, v in _shown_metrics(r, p)]
    for p in probes:
        sec.lines += [str(line) for line in r.results.get(p, {}).get("summary", [])]
    if rows:
        sec.tables.append(CardTable(["metric", "value"], rows))
    if not rows and not sec.lines:
        sec.lines.append(empty)
    return sec


def _failure_modes(r: _Run) -> CardSection:
    sec = CardSection("Known failure modes")
    diagnosis = r.results.get("diagnosis")
    if diagnosis and diagnosis.get("summary"):
        sec.lines += [str(line) for line in diagnosis["summary"][:5]]
        return sec
    names = r.data("evaluation").get("class_names", [])
    pairs = r.data("evaluation").get("confused_pairs", [])
    if pairs and names:
        sec.tables.append(
            CardTable(
                ["true", "predicted as", "count"],
                [[names[p["true"]], names[p["pred"]], str(p["count"])] for p in pairs],
                "The most confused pairs of classes (test images):",
            )
        )
    high = r.data("failures").get("high_confidence_errors", [])
    if r.results.get("failures"):
        threshold = r.data("failures").get("threshold", 0.9)
        caption = f"{len(high)} test images are misclassified with confidence >= {threshold:g}"
        sec.tables.append(
            CardTable(
                ["test index", "true", "predicted", "confidence"],
                [
                    [
                        str(c["index"]),
                        names[c["true"]] if names else str(c["true"]),
                        names[c["pred"]] if names else str(c["pred"]),
                        f"{c['confidence']:.3f}",
                    ]
                    for c in high[:10]
                ],
                caption + ("; the most confident:" if high else "."),
            )
        )
    if not sec.tables:
        sec.lines.append("not measured (the evaluation and failures probes did not run)")
    return sec


def _checks(r: _Run) -> CardSection:
    sec = CardSection("Release checks")
    c = r.checks
    if c is None:
        sec.lines.append("No checks ran on this run (`stresslab check RUN_DIR --checks FILE`).")
        return sec
    verdict = "PASSED" if c["passed"] else "FAILED"
    sec.lines.append(f"{verdict}: {c['n_checks'] - c['n_failed']} of {c['n_checks']} checks passed.")
    sec.tables.append(
        CardTable(
            ["check", "condition", "result"],
            [
                [f"`{x['name']}`", x["condition"], "pass" if x["passed"] else "FAIL: " + x["message"]]
                for x in c["checks"]
            ],
        )
    )
    return sec


def model_card(run_dir: str | Path | RunDir) -> tuple[str, list[CardSection]]:
    """The card of a run: its title and sections (details, intended use, metrics with 95%
    bootstrap intervals and per-class table, calibration, robustness, failure modes,
    label quality and out-of-distribution findings, checks)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    r = _Run(run)
    ood = tuple(p for p in r.results if "ood" in p)
    sections = [
        _details(r),
        _user_fields(r),
        _metrics(r),
        _metric_table("Calibration", r, ("calibration",), "not measured (the calibration probe did not run)"),
        _metric_table(
            "Robustness",
            r,
            ("corruption", "adversarial"),
            "not measured (no corruption or adversarial probe ran)",
        ),
        _failure_modes(r),
        _metric_table(
            "Label quality", r, ("label_issues",), "not measured (the label_issues probe did not run)"
        ),
        _metric_table(
            "Out-of-distribution inputs", r, ood, "not measured (no out-of-distribution probe ran)"
        ),
        _checks(r),
    ]
    return f"Model card: {r.cfg.get('name') or run.path.name}", sections


def card_markdown(title: str, sections: list[CardSection]) -> str:
    """The card as Markdown (one ``##`` heading per section, tables as pipe tables)."""
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        out += [f"{line}\n" for line in sec.lines]
        for t in sec.tables:
            out += [t.caption, ""] if t.caption else []
            out.append("| " + " | ".join(t.columns) + " |")
            out.append("|" + " --- |" * len(t.columns))
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_card(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the card as Markdown (default ``RUN_DIR/model_card.md``), atomically; returns its path."""
    run = RunDir.open(run_dir)
    target = Path(out) if out is not None else run.path / "model_card.md"
    atomic_write_text(target, card_markdown(*model_card(run)))
    return target
