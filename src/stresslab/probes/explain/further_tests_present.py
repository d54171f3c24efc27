"""The further tests (ROAD, localisation, max-sensitivity) written into the probe's result:
metrics with 95% confidence intervals, one table, a summary sentence per test and the settings
used. Undefined values are left out of the metrics and shown as dashes."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from stresslab.probes.base import ProbeResult, Table
from stresslab.probes.explain.checks import finite_mean, mean_ci
from stresslab.probes.explain.compute import Explained
from stresslab.probes.explain.further_tests import FurtherTests
from stresslab.probes.explain.present import DASH_NOTE, put
from stresslab.probes.explain.settings import ExplainSettings


def with_ci(res: ProbeResult, key: str, values: Tensor) -> str | None:
    """Put the mean of ``values`` (finite entries) and its 95% BCa interval under ``key``
    (``_ci_low``, ``_ci_high``); return the table cell ``"0.123 (0.100 to 0.150)"``."""
    mean = finite_mean(values)
    put(res.metrics, key, mean)
    if mean is None:
        return None
    ci = mean_ci(values)
    if ci is None:
        return f"{mean:.3f}"
    res.metrics[f"{key}_ci_low"], res.metrics[f"{key}_ci_high"] = ci
    return f"{mean:.3f} ({ci[0]:.3f} to {ci[1]:.3f})"


def present_further_tests(
    res: ProbeResult, quality: Explained, tests: FurtherTests, settings: ExplainSettings, order: list[str]
) -> dict[str, Any]:
    """Metrics ``<method>.road_morf``, ``_lerf``, ``_gap``, ``<method>.localisation``,
    ``_rank``, ``<method>.max_sensitivity`` (each with ``_ci_low``/``_ci_high`` where the
    interval is defined), ``random.road_morf``/``_lerf`` and ``object_area``; the table of
    methods in ``order``; the summary. Returns the settings used, for the run's record."""
    rows: list[list[Any]] = []
    if tests.random_road is not None:
        put(res.metrics, "random.road_morf", finite_mean(tests.random_road.morf_score))
        put(res.metrics, "random.road_lerf", finite_mean(tests.random_road.lerf_score))
    if tests.object_area is not None:
        put(res.metrics, "object_area", finite_mean(tests.object_area))
    for name in order:
        t = tests.methods[name]
        row: list[Any] = [quality.methods[name].method.label]
        if t.road is not None:
            row += [
                with_ci(res, f"{name}.road_morf", t.road.morf_score),
                with_ci(res, f"{name}.road_lerf", t.road.lerf_score),
                with_ci(res, f"{name}.road_gap", t.road.gap),
            ]
        if t.localisation is not None:
            row += [
                with_ci(res, f"{name}.localisation", t.localisation.mass),
                with_ci(res, f"{name}.localisation_rank", t.localisation.rank),
            ]
        if t.sensitivity is not None:
            row.append(with_ci(res, f"{name}.max_sensitivity", t.sensitivity))
        rows.append(row)
    if rows and len(rows[0]) > 1:
        res.tables.append(_table(rows, tests, settings))
    _summary(res, quality, tests, settings, order)
    return {
        "road_percentages": list(settings.road_percentages),
        "road_noise": settings.road_noise,
        "road_images": tests.road_images,
        "sensitivity_images": tests.sensitivity_images,
        "sensitivity_samples": settings.sensitivity_samples,
        "sensitivity_radius": settings.sensitivity_radius,
        "localisation": tests.object_area is not None,
    }


def _table(rows: list[list[Any]], tests: FurtherTests, s: ExplainSettings) -> Table:
    columns, caption = ["method"], []
    if tests.random_road is not None:
        rm, rl = finite_mean(tests.random_road.morf_score), finite_mean(tests.random_road.lerf_score)
        columns += ["ROAD MoRF (lower is better)", "ROAD LeRF (higher is better)", "ROAD gap LeRF - MoRF"]
        pct = ", ".join(f"{p:g}" for p in s.road_percentages)
        caption.append(
            f"ROAD (Rong et al., 2022) on {tests.road_images} images: share of the images whose predicted "
            f"class survives when the most (MoRF) or least (LeRF) relevant {pct}% of the pixels are filled "
            f"by noisy linear imputation (noise {s.road_noise:g}), averaged over the percentages; random "
            f"pixel orders: MoRF {_num(rm)}, LeRF {_num(rl)}."
        )
    if tests.object_area is not None:
        columns += ["mass on the object", "rank accuracy on the object"]
        caption.append(
            "Localisation (Arras et al., 2022): share of the positive attribution on the object (pixels "
            f"that differ from the plain background), and share of the top-K pixels on it (K = object "
            f"size); a uniform map scores the object's area, {_num(finite_mean(tests.object_area))}."
        )
    if tests.sensitivity_images:
        columns.append("max-sensitivity (lower is more robust)")
        caption.append(
            f"Max-sensitivity (Yeh et al., 2019) on {tests.sensitivity_images} images (a method that "
            "costs k passes per map on 1/k of them, at least 8): the largest "
            "relative change ||map(x + d) - map(x)|| / ||map(x)|| over "
            f"{s.sensitivity_samples} draws of uniform noise d of radius {s.sensitivity_radius:g}."
        )
    caption.append("Means with 95% BCa bootstrap intervals over the images.")
    has_none = any(cell is None for row in rows for cell in row)
    return Table(
        title="Further tests of each explanation method",
        columns=columns,
        rows=rows,
        caption=" ".join(caption) + (" " + DASH_NOTE if has_none else ""),
    )


def _means(order: list[str], values: list[Tensor | None]) -> dict[str, float | None]:
    """Mean of each method's finite values, by name (``None`` where not run or undefined)."""
    return {n: None if v is None else finite_mean(v) for n, v in zip(order, values, strict=True)}


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _summary(
    res: ProbeResult, quality: Explained, tests: FurtherTests, s: ExplainSettings, order: list[str]
) -> None:
    """One sentence per test: which method does best."""

    def best(values: dict[str, float | None], high: bool) -> str | None:
        known = {k: v for k, v in values.items() if v is not None}
        if not known:
            return None
        pick = (max if high else min)(known, key=lambda k: known[k])
        return f"{quality.methods[pick].method.label} ({known[pick]:.3f})"

    m = tests.methods
    if tests.random_road is not None:
        roads = [m[n].road for n in order]
        gaps = _means(order, [None if v is None else v.gap for v in roads])
        rand_gap = finite_mean(tests.random_road.gap)
        top = best(gaps, high=True)
        if top is not None:
            res.summary.append(
                f"ROAD on {tests.road_images} images (noisy linear imputation, not a constant fill): the "
                f"largest gap between least- and most-relevant-first removal is {top}; random orders "
                f"give {_num(rand_gap)}."
            )
    if tests.object_area is not None:
        loc = [m[n].localisation for n in order]
        mass = _means(order, [None if v is None else v.mass for v in loc])
        top = best(mass, high=True)
        if top is not None:
            res.summary.append(
                f"Most attribution mass on the object: {top}, against "
                f"{_num(finite_mean(tests.object_area))} for a uniform map (the object's area)."
            )
    if tests.sensitivity_images:
        sens = _means(order, [m[n].sensitivity for n in order])
        top = best(sens, high=False)
        if top is not None:
            res.summary.append(
                f"Most robust to input noise of radius {s.sensitivity_radius:g}: {top} (max-sensitivity "
                f"over {s.sensitivity_samples} draws on {tests.sensitivity_images} images)."
            )
