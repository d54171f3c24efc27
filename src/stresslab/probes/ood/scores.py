"""Out-of-distribution scores from a trained model alone, no retraining.

Every score is an *outlier score*: float (N,), higher = more out of distribution (the sign
of pytorch-ood's detectors). ``logits`` are (N, K) float; ``features`` are the model's
``features()`` (N, D), the embedding before the classifier head.

- ``msp``: minus the maximum softmax probability, in [-1, -1/K] (Hendrycks & Gimpel,
  ICLR 2017).
- ``max_logit``: minus the largest logit (Hendrycks et al., "Scaling Out-of-Distribution
  Detection for Real-World Settings", ICML 2022).
- ``energy``: the free energy ``-T logsumexp(logits / T)``, T = 1 (Liu et al., NeurIPS 2020).
- ``mahalanobis``: the smallest squared Mahalanobis distance to a class mean, with class
  means and one tied covariance fitted on training features (Lee et al., NeurIPS 2018).
- ``knn``: the Euclidean distance between unit-normalized features and the ``k``-th nearest
  unit-normalized training feature, in [0, 2] (Sun et al., "Out-of-Distribution Detection
  with Deep Nearest Neighbors", ICML 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stresslab.metrics.neighbors import cosine_topk

LOGIT_SCORES = ("msp", "max_logit", "energy")
FEATURE_SCORES = ("mahalanobis", "knn")
SCORES = LOGIT_SCORES + FEATURE_SCORES


def msp(logits: Tensor) -> Tensor:
    """Minus the maximum softmax probability (N,), in [-1, -1/K]."""
    return -F.softmax(logits.float(), dim=1).max(dim=1).values


def max_logit(logits: Tensor) -> Tensor:
    """Minus the largest logit (N,)."""
    return -logits.float().max(dim=1).values


def energy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Free energy ``-T logsumexp(logits / T)`` (N,); in-distribution images have lower energy."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


@dataclass
class Gaussian:
    """Class means ``means`` (K', D) of the classes seen in the fit, and the precision
    (D, D) of their tied covariance (float64)."""

    means: Tensor
    precision: Tensor


def fit_gaussian(features: Tensor, labels: Tensor, ridge: float = 1e-6) -> Gaussian:
    """Class means and the inverse of the tied covariance ``sum_c sum_i (z_i - mu_c)(z_i - mu_c)^T / N``
    (plus ``ridge`` times the mean variance on the diagonal, so a rank-deficient covariance
    stays invertible). Classes absent from ``labels`` have no mean and are left out.

    Args:
        features: float (N, D) training features.
        labels: int64 (N,) their classes.
    """
    z = features.double()
    classes = torch.unique(labels)
    means = torch.stack([z[labels == c].mean(dim=0) for c in classes])
    centered = z - means[torch.searchsorted(classes, labels)]
    cov = centered.T @ centered / max(1, len(z))
    scale = float(torch.diagonal(cov).mean()) or 1.0
    cov += torch.eye(cov.shape[0], dtype=cov.dtype) * ridge * scale
    return Gaussian(means=means, precision=torch.linalg.pinv(cov, hermitian=True))


def mahalanobis(features: Tensor, gaussian: Gaussian, chunk: int = 4096) -> Tensor:
    """Smallest squared Mahalanobis distance (N,) to a class mean, >= 0."""
    out = []
    p = gaussian.precision
    for i in range(0, len(features), chunk):
        z = features[i : i + chunk].double()
        # (z - mu)^T P (z - mu) = z^T P z - 2 z^T P mu + mu^T P mu, for every class at once
        zp = z @ p
        zz = (zp * z).sum(dim=1, keepdim=True)
        mm = ((gaussian.means @ p) * gaussian.means).sum(dim=1)
        d = zz - 2 * zp @ gaussian.means.T + mm
        out.append(d.min(dim=1).values.clamp_min(0.0))
    return torch.cat(out).float() if out else torch.empty(0)


def knn_distance(features: Tensor, train_features: Tensor, k: int) -> Tensor:
    """Distance (N,) in [0, 2] between each unit-normalized feature and its ``k``-th nearest
    unit-normalized training feature (``k`` clipped to the training size): ``sqrt(2 - 2 s)``
    for the ``k``-th largest cosine similarity ``s``."""
    sim, _ = cosine_topk(features, train_features, k)
    if sim.shape[1] == 0:
        return torch.zeros(len(features))
    return (2.0 - 2.0 * sim[:, -1].double()).clamp_min(0.0).sqrt().float()


@dataclass
class Fitted:
    """What the feature scores learn from training images: the Gaussian and the training
    features (float (N, D)); ``None`` where the model has no ``features()``."""

    gaussian: Gaussian | None
    train_features: Tensor | None
    k: int


def fit(train_features: Tensor | None, train_labels: Tensor, k: int) -> Fitted:
    """Fit the feature scores on training features (N, D) and labels (N,); ``None`` features
    (a model without ``features()``) fits nothing."""
    if train_features is None or train_features.ndim != 2 or train_features.shape[1] == 0:
        return Fitted(None, None, k)
    return Fitted(fit_gaussian(train_features, train_labels), train_features.float(), k)


def all_scores(logits: Tensor, features: Tensor | None, fitted: Fitted) -> dict[str, Tensor]:
    """Every score available for images with ``logits`` (N, K) and ``features`` (N, D):
    the three logit scores always, the two feature scores where ``fitted`` has features."""
    out = {"msp": msp(logits), "max_logit": max_logit(logits), "energy": energy(logits)}
    if fitted.gaussian is not None and fitted.train_features is not None and features is not None:
        out["mahalanobis"] = mahalanobis(features, fitted.gaussian)
        out["knn"] = knn_distance(features, fitted.train_features, fitted.k)
    return out
