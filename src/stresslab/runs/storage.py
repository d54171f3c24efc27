"""ProbeResult <-> RUN_DIR/results: JSON plus one PNG per figure, written atomically."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from stresslab.files import atomic_write_bytes, atomic_write_json, read_json
from stresslab.probes.base import PROBES, ProbeResult, Table
from stresslab.runs.directory import RunDir


def save_result(run: RunDir, probe: str, result: ProbeResult, seconds: float) -> dict[str, Any]:
    """Save figures as PNG under ``results/<probe>/`` and the rest as ``results/<probe>.json``.

    Figures are closed after saving. Returns the JSON record written.
    """
    figures = []
    for stem, fig in result.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        rel = f"{probe}/{stem}.png"
        atomic_write_bytes(run.results / rel, buf.getvalue())
        figures.append({"file": rel, "caption": result.captions.get(stem, "")})
    cls = PROBES.get(probe) if probe in PROBES else None
    record = {
        "probe": probe,
        "order": cls.order if cls else 100,
        "headlines": [asdict(h) for h in cls.headlines] if cls else [],
        "seconds": seconds,
        "metrics": result.metrics,
        "tables": [asdict(t) for t in result.tables],
        "figures": figures,
        "warnings": result.warnings,
        "summary": result.summary,
        "data": result.data,
        "offer": asdict(result.offer) if result.offer is not None else None,  # type: ignore[call-overload]
    }
    atomic_write_json(run.result_json(probe), record)
    return record


def load_result(path: str | Path) -> ProbeResult:
    """A saved result back as a ProbeResult (figures stay on disk; ``data['figure_files']`` lists them)."""
    rec = read_json(path)
    res = ProbeResult(
        metrics=dict(rec.get("metrics", {})),
        tables=[Table(**t) for t in rec.get("tables", [])],
        warnings=list(rec.get("warnings", [])),
        summary=list(rec.get("summary", [])),
        data=dict(rec.get("data", {})),
    )
    res.data["figure_files"] = rec.get("figures", [])
    probe = rec.get("probe", Path(path).stem)
    offered = rec.get("offer")
    if offered is not None and probe in PROBES and PROBES.get(probe).offers is not None:
        res.offer = PROBES.get(probe).offers(**offered)  # type: ignore[misc]
    return res


def load_results(run: RunDir) -> dict[str, dict[str, Any]]:
    """Saved probe records in report order: each probe's declared ``order``, then name."""
    found = {p.stem: read_json(p) for p in run.results.glob("*.json") if not p.name.endswith(".failed.json")}
    return dict(sorted(found.items(), key=lambda kv: (kv[1].get("order", 100), kv[0])))
