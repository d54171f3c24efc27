"""``study.json`` and a self-contained ``report.html`` from a study directory alone."""

from __future__ import annotations

import base64
import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from stresslab.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from stresslab.report.figures import plt
from stresslab.report.render import fmt, render_template
from stresslab.study import figures as F
from stresslab.study.aggregate import METRICS, RunData, collect
from stresslab.study.checks import study_checks
from stresslab.study.compare import take
from stresslab.study.gallery import gradcam_maps, test_images, thumbnail
from stresslab.study.plan import StudyDir
from stresslab.study.spec import StudySpec
from stresslab.study.summary import summarize

log = logging.getLogger(__name__)
GALLERY = 12  # images per gallery
CAMS = 4  # Grad-CAM rows per arm


def value_text(v: float | None, percent: bool) -> str:
    """A metric value for a table cell: percentages with 2 decimals, else 4 significant digits."""
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v * 100:.2f}%" if percent else fmt(float(v))


def interval_text(rec: dict[str, Any], percent: bool) -> str:
    """``mean ± std [lo, hi]`` of an interval record (``mean`` alone for one seed)."""
    text = value_text(rec.get("mean"), percent)
    if rec.get("std") is not None:
        text += f" ± {value_text(rec['std'], percent)} [{value_text(rec['lo'], percent)}, {value_text(rec['hi'], percent)}]"  # noqa: E501
    return text


def diff_text(rec: dict[str, Any], percent: bool, interval: bool = True) -> str:
    """``diff [lo, hi]`` of a difference record (points for percentages); ``interval=False``
    gives the difference alone (for quantities that do not vary between seeds)."""

    def v(x: float | None) -> str:
        if x is None or not math.isfinite(x):
            return "–"
        return f"{x * 100:+.2f}" if percent else f"{x:+.4g}"

    text = v(rec.get("diff"))
    if interval and rec.get("lo") is not None:
        text += f" [{v(rec['lo'])}, {v(rec['hi'])}]"
    elif interval and rec.get("reason") and rec.get("n") is not None:
        text += f" (no interval: {rec['n']} seeds)"
    return text


def size_text(v: float | None, percent: bool) -> str:
    """A detectable difference: points for percentages, else 4 significant digits."""
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v * 100:.2f} points" if percent else fmt(float(v))


def _costs(runs: dict[str, dict[int, RunData]]) -> dict[str, dict[str, float]]:
    from stresslab.runs.directory import RunDir
    from stresslab.runs.loaded import load_model
    from stresslab.study.cost import model_cost

    out: dict[str, dict[str, float]] = {}
    for arm, seeds in runs.items():
        for r in seeds.values():
            if not r.usable:
                continue
            try:
                model, meta = load_model(RunDir(r.path))
                out[arm] = model_cost(model, meta["channels"], meta["height"], meta["width"])
            except Exception as e:  # a cost that cannot be measured is left out, not fatal
                log.warning("cost of arm %s: %s", arm, e)
            break
    return out


def _save(sdir: StudyDir, stem: str, fig: Figure, caption: str) -> dict[str, str]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(sdir.figures / f"{stem}.png", buf.getvalue())
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return {"name": stem, "src": src, "caption": caption}


def _lookup(
    runs: dict[str, dict[int, RunData]], arm: str, indices: list[int]
) -> dict[int, tuple[float, int]]:
    """Per test index: the mean probability of the true class over the arm's seeds, and the
    predicted class of most seeds."""
    rows = [r.preds for r in runs[arm].values() if r.preds is not None]
    idx = np.asarray(indices, dtype=np.int64)
    if not rows or not len(idx):
        return {}
    pt = [take(p.index, p.probs, idx)[np.arange(len(idx)), take(p.index, p.labels, idx)] for p in rows]
    votes = np.stack([take(p.index, p.preds, idx) for p in rows])
    mean = np.mean(pt, axis=0)
    return {int(i): (float(mean[k]), int(np.bincount(votes[:, k]).argmax())) for k, i in enumerate(idx)}


def _gallery(
    runs: dict[str, dict[int, RunData]],
    spec: StudySpec,
    indices: list[int],
    images: dict[int, np.ndarray],
    labels: dict[int, int],
    names: list[str],
) -> list[dict[str, Any]]:
    looks = {arm: _lookup(runs, arm, indices) for arm in spec.arms}
    out = []
    for i in indices:
        cells = []
        for arm in spec.arms:
            if i in looks[arm]:
                p, pred = looks[arm][i]
                cells.append(f"{p:.2f} · {names[pred]}")
            else:
                cells.append("–")
        thumb = thumbnail(images[i]) if i in images else ""
        out.append({"index": i, "thumb": thumb, "true": names[labels[i]], "cells": cells})
    return out


def render_study(study_dir: str | Path | StudyDir) -> dict[str, Any]:
    """Write ``study.json`` and ``report.html`` (figures also as PNG under ``figures/``)."""
    sdir = study_dir if isinstance(study_dir, StudyDir) else StudyDir.open(study_dir)
    spec = sdir.spec()
    runs = collect(sdir, spec)
    summary = summarize(spec, runs, _costs(runs))
    summary["checks"] = study_checks(spec, runs)
    base = spec.compare_to
    names = summary["class_names"]
    usable = [r for seeds in runs.values() for r in seeds.values() if r.usable]
    labels: dict[int, int] = {}
    for r in usable:
        assert r.preds is not None
        labels.update(zip(r.preds.index.tolist(), r.preds.labels.tolist(), strict=True))

    wanted: dict[str, list[int]] = {"hard core": summary["hard_core"]["indices"]}
    hard_conf = _lookup(runs, base, wanted["hard core"]) if base in runs else {}
    wanted["hard core"] = sorted(wanted["hard core"], key=lambda i: hard_conf.get(i, (0.0, 0))[0])[:GALLERY]
    for arm, c in summary["cases"].items():
        wanted[f"fixed by {arm}"] = c.get("consistent", {}).get("fixed", [])[:GALLERY]
        wanted[f"broken by {arm}"] = c.get("consistent", {}).get("broken", [])[:GALLERY]
    needed = sorted({i for v in wanted.values() for i in v})
    images = test_images(sdir, usable[0].path, needed) if usable and needed else {}
    galleries: list[dict[str, Any]] = [
        {"title": t, "rows": _gallery(runs, spec, v, images, labels, names)} for t, v in wanted.items() if v
    ]

    figures: dict[str, list[dict[str, str]]] = {"curves": [], "cams": [], "classes": [], "grid": []}
    if any(c["epoch"] for c in summary["curves"].values()):
        figures["curves"].append(
            _save(
                sdir,
                "curves",
                F.curves_figure(summary["curves"]),
                "Mean over seeds (line) and +-1 standard deviation (band) per epoch.",
            )
        )
    fig = F.class_delta_figure(summary["per_class"], base)
    if fig is not None:
        figures["classes"].append(
            _save(sdir, "class_deltas", fig, "Per-class accuracy difference to the baseline.")
        )
    for arm, c in summary["cases"].items():
        idx = c.get("consistent", {}).get("fixed", [])[:CAMS]
        idx = [i for i in idx if i in images]
        if not idx or not c["seeds"]:
            continue
        s = c["seeds"][0]
        try:
            batch = np.stack([images[i] for i in idx])
            left = (base, *gradcam_maps(runs[base][s].path, batch))
            right = (arm, *gradcam_maps(runs[arm][s].path, batch))
        except Exception as e:  # Grad-CAM is an illustration; its failure must not lose the report
            log.warning("Grad-CAM for %s: %s", arm, e)
            continue
        titles = [f"#{i} {names[labels[i]]}" for i in idx]
        fig = F.gradcam_figure(batch, left, right, titles, names)  # type: ignore[arg-type]
        figures["cams"].append(
            _save(
                sdir,
                f"gradcam_{arm}",
                fig,
                f"Images fixed by {arm} in every seed: Grad-CAM of {base} and {arm} (seed {s}) for "
                "their predicted class (class and probability above each map).",
            )
        )
    if "grid" in summary and summary["grid"]["rows"]:
        figures["grid"].append(
            _save(
                sdir,
                "pareto",
                F.pareto_figure(summary["grid"]["rows"]),
                "Accuracy against forward FLOPs per image; red points form the Pareto front.",
            )
        )

    atomic_write_json(
        sdir.summary,
        {**summary, "galleries": {g["title"]: [r["index"] for r in g["rows"]] for g in galleries}},
    )
    html = render_template(
        "study.html.j2",
        s=summary,
        spec=spec,
        metrics=METRICS,
        table=_metric_rows(summary, spec),
        galleries=galleries,
        figures=figures,
        value_text=value_text,
        interval_text=interval_text,
        diff_text=diff_text,
        size_text=size_text,
        spec_yaml=yaml.safe_dump(spec.to_dict(), sort_keys=False),
        study_name=sdir.path.name,
    )
    atomic_write_text(sdir.report, html)
    return summary


def _metric_rows(summary: dict[str, Any], spec: StudySpec) -> list[dict[str, Any]]:
    rows = []
    for arm in spec.arms:
        rec = summary["arms"].get(arm)
        if rec is None:
            rows.append({"arm": arm, "n": 0, "cells": ["–"] * len(METRICS), "kind": "arm"})
            continue
        cells = [
            interval_text(rec["metrics"][m.key], m.percent)
            if m.spread
            else value_text(rec["metrics"][m.key]["mean"], m.percent)
            for m in METRICS
        ]
        rows.append({"arm": arm, "n": rec["n_done"], "cells": cells, "kind": "arm"})
        ens = rec["ensemble"]
        if ens.get("n_members", 0) > 1:
            cells = ["–"] * len(METRICS)
            cells[0] = value_text(ens["accuracy"], True)
            cells[2] = value_text(ens["ece"], False)
            rows.append(
                {"arm": f"{arm} (ensemble of {ens['n_members']})", "n": 1, "cells": cells, "kind": "ens"}
            )
    return rows
