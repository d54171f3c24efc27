"""Map concentration in the explain probe's report: metrics (``<method>.concentration_*``),
a table, a summary line, warnings for undefined values and the
``concentration_vs_uncertainty`` figure."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stresslab.probes.base import ProbeResult, Table
from stresslab.probes.explain.checks import finite_mean
from stresslab.probes.explain.compute import Explained
from stresslab.probes.explain.concentration import TOP_FRACTION, MethodConcentration, Rank
from stresslab.probes.explain.present import fmt, put

TOP = f"top{round(100 * TOP_FRACTION)}"
TOP_LABEL = f"top-{TOP_FRACTION:.0%} share"


def _p(rank: Rank) -> str | None:
    return None if rank.p_value is None else f"{rank.p_value:.3g}"


def present_concentration(
    res: ProbeResult,
    explained: Explained,
    found: dict[str, MethodConcentration],
    alpha: float,
    sampled: bool = False,
) -> None:
    """Metrics, table, summary line and warnings of the concentration measures into ``res``.

    ``sampled``: ``explained`` is the probe's seeded random sample of test images (the quality
    sample), not its chosen cases; the caption says which."""
    rows: list[list[Any]] = []
    parts: list[str] = []
    diffuse: list[str] = []
    focused: list[str] = []
    for name, c in found.items():
        label = explained.methods[name].method.label
        put(res.metrics, f"{name}.concentration_entropy_mean", finite_mean(c.entropy))
        put(res.metrics, f"{name}.concentration_{TOP}_mean", finite_mean(c.top_share))
        for key, rank in (("entropy", c.entropy_rank), (TOP, c.top_rank)):
            put(res.metrics, f"{name}.concentration_{key}_spearman", rank.rho)
            put(res.metrics, f"{name}.concentration_{key}_spearman_p", rank.p_value)
            if rank.rho is None:
                what = "map entropy" if key == "entropy" else TOP_LABEL
                res.warnings.append(
                    f"{label}: the rank correlation of {what} with the prediction entropy is undefined "
                    f"({rank.why}); left out of the metrics"
                )
        e = c.entropy_rank
        rows.append(
            [
                label,
                fmt(finite_mean(c.entropy)),
                fmt(finite_mean(c.top_share), pct=True),
                fmt(e.rho),
                _p(e),
                fmt(c.top_rank.rho),
                _p(c.top_rank),
                e.n,
            ]
        )
        if e.rho is not None and e.p_value is not None:
            parts.append(f"{label} rho = {e.rho:+.2f} (p = {e.p_value:.3g}, n = {e.n})")
            if e.p_value < alpha:
                (diffuse if e.rho > 0 else focused).append(label)
    over = (
        f"the {len(explained.cases)} test images of the seeded random sample"
        if sampled
        else "the explained cases, which are chosen (errors, uncertain and correct predictions), not a "
        "random sample"
    )
    res.tables.append(
        Table(
            title="Map concentration against prediction uncertainty",
            columns=[
                "method",
                "mean map entropy",
                f"mean {TOP_LABEL}",
                "rank corr. entropy",
                "p",
                f"rank corr. {TOP_LABEL}",
                "p",
                "cases",
            ],
            rows=rows,
            caption=(
                "Each map as a distribution over pixels of |attribution|: its entropy normalized by log "
                f"(pixels) (1 uniform, 0 one pixel) and the share of its mass in the top {TOP_FRACTION:.0%} "
                f"of pixels. Rank corr.: Spearman's rho with the prediction's entropy over {over}, "
                "two-sided p-value. Diffuse maps when uncertain: entropy rho > 0, share rho < 0. "
                "A dash: undefined (see the warnings)."
            ),
        )
    )
    if parts:
        found_in = []
        if diffuse:
            found_in.append(f"more diffuse on uncertain predictions for {', '.join(diffuse)}")
        if focused:
            found_in.append(f"more concentrated on uncertain predictions for {', '.join(focused)}")
        verdict = (
            "maps are significantly " + ", and ".join(found_in) + f" (alpha {alpha})"
            if found_in
            else f"no method's maps change significantly with the prediction's uncertainty (alpha {alpha})"
        )
        res.summary.append(
            "Map entropy against prediction entropy (Spearman): " + "; ".join(parts) + f": {verdict}."
        )


def concentration_figure(explained: Explained, found: dict[str, MethodConcentration]) -> Figure:
    """Per method (columns): map entropy (top row) and top-10% share (bottom row) against the
    prediction's entropy, errors and correct predictions marked apart."""
    fig = Figure(figsize=(2.8 * len(found) + 0.6, 5.2))
    axes = np.asarray(fig.subplots(2, len(found), squeeze=False))
    uncertainty = np.array([c.entropy for c in explained.cases])
    is_err = explained.is_error.numpy()
    for j, (name, c) in enumerate(found.items()):
        label = explained.methods[name].method.label
        for i, (values, rank, ylabel) in enumerate(
            ((c.entropy, c.entropy_rank, "map entropy (normalized)"), (c.top_share, c.top_rank, TOP_LABEL))
        ):
            ax = axes[i, j]
            v = values.numpy()
            ax.scatter(uncertainty[is_err], v[is_err], s=12, c="tab:red", label="error")
            ax.scatter(uncertainty[~is_err], v[~is_err], s=12, c="tab:blue", label="correct")
            stat = "undefined" if rank.rho is None else f"rho {rank.rho:+.2f}, p {rank.p_value:.2g}"
            ax.set_title(f"{label}: {stat}", fontsize=8)
            ax.set_xlabel("prediction entropy (nats)", fontsize=7)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=7)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig
