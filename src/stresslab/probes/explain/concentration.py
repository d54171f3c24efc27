"""How concentrated each map is, and whether maps grow diffuse as the model grows uncertain.

A map is read as a distribution over pixels of its absolute attribution, p = |m| / sum |m|.
Two measures of its concentration:

- normalized entropy H(p) / log P over the P pixels, in [0, 1]: 1 for a uniform map, 0 for
  a single hot pixel (diffuse maps score high);
- the share of the mass in the top 10% of pixels (ceil(0.1 P) pixels), in [0.1, 1]
  (0.1 uniform, 1 for mass on at most that many pixels; focused maps score high).

Each is set against the prediction's entropy over the explained cases by Spearman's rank
correlation (scipy.stats.spearmanr, with its two-sided p-value): "diffuse maps when
uncertain" predicts a positive correlation for the entropy and a negative one for the
top-10% share. Undefined values (a map without attribution; a correlation over fewer than
3 cases or a constant variable) are NaN / ``None`` with a reason, never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.probes.explain.compute import Explained

#: Share of pixels whose mass is the "top share".
TOP_FRACTION = 0.1


def map_concentration(maps: Tensor, top_fraction: float = TOP_FRACTION) -> tuple[Tensor, Tensor]:
    """Normalized entropy (N,) in [0, 1] and top-``top_fraction`` mass share (N,) in
    [top_fraction, 1] of ``maps`` (N, H, W) (any sign; float64 results). Both are NaN for
    a map whose absolute values sum to 0 or are not finite; the entropy is NaN for a
    one-pixel map."""
    a = maps.detach().abs().flatten(1).double().cpu()
    n_pixels = a.shape[1]
    total = a.sum(1, keepdim=True)
    ok = (total[:, 0] > 0) & torch.isfinite(total[:, 0])
    p = a / torch.where(total > 0, total, torch.ones_like(total))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    entropy = -plogp.sum(1) / math.log(n_pixels) if n_pixels > 1 else torch.full((len(a),), math.nan)
    k = max(1, math.ceil(top_fraction * n_pixels - 1e-9))
    top = p.topk(min(k, n_pixels), dim=1).values.sum(1) if n_pixels else torch.zeros(len(a))
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return torch.where(ok, entropy, nan), torch.where(ok, top, nan)


@dataclass(frozen=True)
class Rank:
    """Spearman's rho and its two-sided p-value over ``n`` cases with defined values;
    ``None`` where undefined, with ``why``."""

    rho: float | None
    p_value: float | None
    n: int
    why: str = ""


def rank_correlation(values: Tensor, uncertainty: Tensor) -> Rank:
    """Spearman rank correlation of ``values`` (N,) with ``uncertainty`` (N,) over the finite pairs."""
    from scipy.stats import spearmanr

    keep = torch.isfinite(values) & torch.isfinite(uncertainty)
    v, u = values[keep].double().numpy(), uncertainty[keep].double().numpy()
    n = len(v)
    if n < 3:
        return Rank(None, None, n, f"only {n} case(s) with a defined value; at least 3 are needed")
    if v.min() == v.max() or u.min() == u.max():
        which = "the map measure" if v.min() == v.max() else "the prediction entropy"
        return Rank(None, None, n, f"{which} is the same on every case")
    result = spearmanr(v, u)
    rho, p = float(result.statistic), float(result.pvalue)
    if not (math.isfinite(rho) and math.isfinite(p)):
        return Rank(None, None, n, "scipy's Spearman correlation is undefined here")
    return Rank(rho, p, n)


@dataclass(frozen=True)
class MethodConcentration:
    """One method on the N cases: each map's ``entropy`` and ``top_share`` (N,) float64
    (NaN where undefined) and their rank correlations with the prediction entropy."""

    entropy: Tensor
    top_share: Tensor
    entropy_rank: Rank
    top_rank: Rank


def concentration(explained: Explained) -> dict[str, MethodConcentration]:
    """Concentration of every method's maps (those explaining the predicted class) against
    the entropy of the prediction, by method name in the configured order."""
    uncertainty = torch.tensor([c.entropy for c in explained.cases], dtype=torch.float64)
    out = {}
    for name, r in explained.methods.items():
        entropy, top = map_concentration(r.maps)
        out[name] = MethodConcentration(
            entropy, top, rank_correlation(entropy, uncertainty), rank_correlation(top, uncertainty)
        )
    return out
