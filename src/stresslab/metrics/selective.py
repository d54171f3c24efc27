"""Selective prediction: answer only the most confident share of the inputs, abstain on the rest.

The risk-coverage curve (Geifman & El-Yaniv, "Selective Classification for Deep Neural
Networks", NeurIPS 2017) ranks the N test images by confidence and gives, for each
coverage k/N, the error rate (risk) on the k most confident. Its area, AURC, is the mean
risk over k = 1..N; lower is better. E-AURC subtracts the AURC of the ideal ranking (every
right prediction before every wrong one), so it measures the ranking alone, not the error
rate (Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
Classifiers", ICLR 2019 (arXiv 2018)).

Ties in confidence have no order: within a group of equal confidences the risk is its
expected value over the group's orderings (errors spread evenly through the group), so the
result does not depend on how a sort breaks ties. Inputs: ``confidence`` (N,) any real
score, higher = more confident; ``correct`` (N,) bool or {0, 1}. Work is in float64.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor


def _arrays(confidence: Tensor, correct: Tensor) -> tuple[np.ndarray, np.ndarray]:
    conf = confidence.detach().cpu().double().numpy().reshape(-1)
    err = 1.0 - correct.detach().cpu().double().numpy().reshape(-1)
    if conf.shape != err.shape:
        raise ValueError(f"confidence ({conf.shape[0]}) and correct ({err.shape[0]}) differ in length")
    return conf, err


def risk_coverage(confidence: Tensor, correct: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (N,) = k / N and risk (N,) in [0, 1], the (expected, over ties) error rate
    of the k most confident predictions, for k = 1..N. Empty arrays for N = 0."""
    conf, err = _arrays(confidence, correct)
    n = len(conf)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    c, e = conf[order], err[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_err = np.add.reduceat(e, starts)
    before = np.cumsum(group_err) - group_err
    group = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(n)
    taken = position - starts[group] + 1  # images of its group among the k most confident
    expected_errors = before[group] + taken * group_err[group] / sizes[group]
    return (position + 1) / n, expected_errors / (position + 1)


def aurc(confidence: Tensor, correct: Tensor) -> float:
    """Area under the risk-coverage curve, the mean risk over k = 1..N, in [0, 1]; NaN for N = 0."""
    _, risk = risk_coverage(confidence, correct)
    return float(risk.mean()) if len(risk) else math.nan


def oracle_aurc(correct: Tensor) -> float:
    """The AURC of the ideal ranking (all right predictions first) at the same error rate."""
    err = 1.0 - correct.detach().cpu().double().numpy().reshape(-1)
    n = len(err)
    if n == 0:
        return math.nan
    k = np.arange(1, n + 1)
    n_right = n - err.sum()
    return float((np.clip(k - n_right, 0.0, None) / k).mean())


def excess_aurc(confidence: Tensor, correct: Tensor) -> float:
    """E-AURC = AURC - oracle AURC, in [0, 1): zero for a ranking that puts every right
    prediction first; NaN for N = 0."""
    return aurc(confidence, correct) - oracle_aurc(correct)


def accuracy_at_coverage(confidence: Tensor, correct: Tensor, coverage: float) -> float:
    """Accuracy on the ceil(coverage x N) most confident predictions (the least confident
    abstained on), in [0, 1]; NaN for N = 0. ``coverage`` in (0, 1]."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    _, risk = risk_coverage(confidence, correct)
    n = len(risk)
    if n == 0:
        return math.nan
    k = max(1, math.ceil(coverage * n - 1e-9))  # 1e-9: 0.9 x 10 is 9.000000000000002 in floats
    return float(1.0 - risk[k - 1])
