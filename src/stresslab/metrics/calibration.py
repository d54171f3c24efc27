"""Calibration metrics as pure functions of probabilities or logits and labels.

Shapes: ``probs`` (N, K) with rows summing to 1, ``logits`` (N, K), ``labels`` (N,) int64.
Every function returns a finite float, also for N = 0, for confidences of exactly 1.0 and
for empty bins (an empty bin has no weight). Work is done in float64 on the CPU.

Equal-width bins are ``[i/B, (i+1)/B)``, the last one closed at 1.0; this matches
``torchmetrics.functional.classification.multiclass_calibration_error`` except that
torchmetrics gives confidence 1.0 a bin of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram, each a float64 tensor of shape (B,).

    ``lower``/``upper``: bin edges in [0, 1]; ``count``: samples in the bin;
    ``confidence``: mean confidence; ``accuracy``: fraction correct (both 0 for an empty bin).
    """

    lower: Tensor
    upper: Tensor
    count: Tensor
    confidence: Tensor
    accuracy: Tensor

    @property
    def gap(self) -> Tensor:
        """``|accuracy - confidence|`` per bin (0 for empty bins)."""
        return (self.accuracy - self.confidence).abs()

    @property
    def weight(self) -> Tensor:
        """Fraction of samples per bin; all zeros when there are no samples."""
        total = float(self.count.sum())
        return self.count / total if total > 0 else torch.zeros_like(self.count)


def _prepare(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Top-label confidence (N,) float64 and correctness (N,) float64."""
    p = probs.detach().cpu().double()
    if p.numel() == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, empty
    conf, pred = p.max(dim=1)
    return conf.clamp(0.0, 1.0), (pred == labels.detach().cpu().long()).double()


def _bin_stats(index: Tensor, conf: Tensor, hit: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(conf))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, conf)
    hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, hit)
    safe = count.clamp_min(1.0)
    return count, conf_sum / safe, hit_sum / safe


def equal_width_bins(confidence: Tensor, correct: Tensor, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin confidences (N,) in [0, 1] into ``n_bins`` equal-width bins with correctness (N,) in {0, 1}."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = confidence.detach().cpu().double().clamp(0.0, 1.0)
    hit = correct.detach().cpu().double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, n_bins - 1)
    count, mean_conf, acc = _bin_stats(index, conf, hit, n_bins)
    return ReliabilityBins(edges[:-1], edges[1:], count, mean_conf, acc)


def equal_mass_bins(confidence: Tensor, correct: Tensor, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin sorted confidences (N,) into ``n_bins`` bins of (nearly) equal count.

    Sizes follow ``numpy.array_split``: the first ``N mod B`` bins hold one extra sample;
    with N < B the last bins are empty. Edges are the smallest and largest confidence in
    each bin (0 for an empty bin).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = confidence.detach().cpu().double().clamp(0.0, 1.0)
    hit = correct.detach().cpu().double()
    order = torch.argsort(conf, stable=True)
    conf, hit = conf[order], hit[order]
    n = len(conf)
    base, extra = divmod(n, n_bins)
    sizes = torch.tensor([base + (1 if i < extra else 0) for i in range(n_bins)], dtype=torch.long)
    index = torch.repeat_interleave(torch.arange(n_bins), sizes)
    count, mean_conf, acc = _bin_stats(index, conf, hit, n_bins)
    lower = torch.zeros(n_bins, dtype=torch.float64)
    upper = torch.zeros(n_bins, dtype=torch.float64)
    starts = torch.cumsum(sizes, 0) - sizes
    for i in range(n_bins):
        if sizes[i] > 0:
            lower[i] = conf[starts[i]]
            upper[i] = conf[starts[i] + sizes[i] - 1]
    return ReliabilityBins(lower, upper, count, mean_conf, acc)


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Equal-width reliability bins of the top-label confidence of ``probs`` (N, K)."""
    conf, hit = _prepare(probs, labels)
    return equal_width_bins(conf, hit, n_bins)


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins, in [0, 1] (Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017): ``sum_b (n_b / N) |acc_b - conf_b|``. 0.0 when N = 0."""
    bins = reliability_bins(probs, labels, n_bins)
    return float((bins.weight * bins.gap).sum())


def maximum_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Largest ``|acc_b - conf_b|`` over the non-empty equal-width bins, in [0, 1] (Naeini et
    al., AAAI 2015; Guo et al., 2017). 0.0 when N = 0."""
    bins = reliability_bins(probs, labels, n_bins)
    gaps = bins.gap[bins.count > 0]
    return float(gaps.max()) if len(gaps) else 0.0


def adaptive_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with equal-mass bins, in [0, 1] ("adaptive ECE", Nixon et al., "Measuring
    Calibration in Deep Learning", CVPR Workshops 2019). 0.0 when N = 0."""
    conf, hit = _prepare(probs, labels)
    bins = equal_mass_bins(conf, hit, n_bins)
    return float((bins.weight * bins.gap).sum())


def classwise_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Class-wise ECE, in [0, 1] (Kull et al., "Beyond temperature scaling", NeurIPS 2019).

    For each class k, the probabilities ``p_k`` of all N samples are put into equal-width
    bins and compared with the frequency of class k in each bin; the K errors are averaged.
    0.0 when N = 0.
    """
    p = probs.detach().cpu().double()
    if p.numel() == 0:
        return 0.0
    y = labels.detach().cpu().long()
    errors = []
    for k in range(p.shape[1]):
        bins = equal_width_bins(p[:, k], (y == k).double(), n_bins)
        errors.append(float((bins.weight * bins.gap).sum()))
    return sum(errors) / len(errors)


def negative_log_likelihood(logits: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood of the labels in nats, >= 0, from ``logits`` (N, K).

    Computed with ``log_softmax`` in float64, so a confident wrong prediction gives a large
    finite value instead of ``inf``. 0.0 when N = 0.
    """
    z = logits.detach().cpu().double()
    if z.numel() == 0:
        return 0.0
    return float(F.cross_entropy(z, labels.detach().cpu().long()))


def brier_score(probs: Tensor, labels: Tensor) -> float:
    """Multi-class Brier score (Brier, 1950): ``mean_i sum_k (p_ik - [y_i = k])^2``, in [0, 2].
    0.0 when N = 0."""
    p = probs.detach().cpu().double()
    if p.numel() == 0:
        return 0.0
    onehot = F.one_hot(labels.detach().cpu().long(), p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(dim=1).mean())


def fit_temperature(
    logits: Tensor,
    labels: Tensor,
    *,
    max_iter: int = 100,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Temperature ``T > 0`` minimizing the NLL of ``softmax(logits / T)`` (temperature
    scaling, Guo et al., ICML 2017), fitted with L-BFGS on ``log T`` in float64.

    ``logits`` (N, K) and ``labels`` (N,) should be a held-out (validation) split. Returns
    1.0 for N = 0; the result is clipped to ``bounds`` (e.g. when every prediction is right,
    NLL keeps falling as T -> 0) and is 1.0 if the fit does not give a finite value.
    """
    z = logits.detach().cpu().double()
    if z.numel() == 0:
        return 1.0
    y = labels.detach().cpu().long()
    if bool((z.argmax(dim=1) == y).all()):
        # Every prediction right: the NLL falls monotonically as T -> 0, so the minimum is
        # the lower bound (the optimizer would stall early on a vanishing gradient).
        return float(bounds[0])
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(lo - 1.0, hi + 1.0).exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    value = float(log_t.detach())
    if not math.isfinite(value):
        return 1.0
    return float(math.exp(min(max(value, lo), hi)))


def calibration_summary(logits: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """All calibration metrics of ``logits`` (N, K) as a flat dict of finite floats.

    Keys: ``ece``, ``aece``, ``mce``, ``classwise_ece``, ``nll`` (nats), ``brier``,
    ``accuracy``, ``mean_confidence``, ``mean_confidence_correct``, ``mean_confidence_wrong``
    (0.0 where there is no such prediction).
    """
    z = logits.detach().cpu().double()
    y = labels.detach().cpu().long()
    probs = F.softmax(z, dim=1) if z.numel() else z
    conf, hit = _prepare(probs, y)

    def mean(t: Tensor) -> float:
        return float(t.mean()) if len(t) else 0.0

    return {
        "ece": expected_calibration_error(probs, y, n_bins),
        "aece": adaptive_calibration_error(probs, y, n_bins),
        "mce": maximum_calibration_error(probs, y, n_bins),
        "classwise_ece": classwise_calibration_error(probs, y, n_bins),
        "nll": negative_log_likelihood(z, y),
        "brier": brier_score(probs, y),
        "accuracy": mean(hit),
        "mean_confidence": mean(conf),
        "mean_confidence_correct": mean(conf[hit > 0.5]),
        "mean_confidence_wrong": mean(conf[hit < 0.5]),
    }
