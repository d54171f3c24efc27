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
    """Class means ``means`` (K', D) of the classes seen in the fit and ``whiten`` (D, D), a
    factor ``A`` of the precision (``A A^T = Sigma^-1``), both float64, so the squared
    Mahalanobis distance is ``||(z - mu) A||^2``."""

    means: Tensor
    whiten: Tensor

    @property
    def precision(self) -> Tensor:
        """The precision matrix (D, D) ``A A^T``."""
        return self.whiten @ self.whiten.T


def fit_gaussian(features: Tensor, labels: Tensor, ridge: float = 1e-6) -> Gaussian:
    """Class means and the tied covariance ``Sigma = (S + ridge I) / N`` from the scatter
    matrix ``S = sum_c sum_i (z_i - mu_c)(z_i - mu_c)^T`` (the ridge on ``S``, as pytorch-ood
    and Lee et al.'s code, keeps a rank-deficient covariance invertible). Classes absent from
    ``labels`` have no mean and are left out.

    Args:
        features: float (N, D) training features.
        labels: int64 (N,) their classes.
    """
    z = features.double()
    classes = torch.unique(labels)
    means = torch.stack([z[labels == c].mean(dim=0) for c in classes])
    centered = z - means[torch.searchsorted(classes, labels)]
    scatter = centered.T @ centered
    scatter += torch.eye(scatter.shape[0], dtype=scatter.dtype) * ridge
    # Sigma^-1 = N S^-1 = N L^-T L^-1 for S = L L^T, so A = sqrt(N) L^-T.
    chol = torch.linalg.cholesky(scatter)
    eye = torch.eye(scatter.shape[0], dtype=scatter.dtype)
    inv_l = torch.linalg.solve_triangular(chol, eye, upper=False)
    return Gaussian(means=means, whiten=inv_l.T * max(1, len(z)) ** 0.5)


def mahalanobis(features: Tensor, gaussian: Gaussian, chunk: int = 512) -> Tensor:
    """Smallest squared Mahalanobis distance (N,) to a class mean, >= 0.

    Whitened once (``u = z A``), the distance to each class is a direct sum of squares, with
    none of the cancellation of ``z^T P z - 2 z^T P mu + mu^T P mu``.
    """
    # The fit is float64; the whitening product, the cost, runs in float32 (no cancellation
    # follows: the distances are sums of squares of whitened differences).
    a32 = gaussian.whiten.float()
    m = (gaussian.means @ gaussian.whiten).float()
    out = []
    for i in range(0, len(features), chunk):
        u = features[i : i + chunk].float() @ a32
        d = ((u[:, None, :] - m[None]) ** 2).sum(dim=2)
        out.append(d.min(dim=1).values)
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
    (a model without ``features()``) fits nothing. (Embeddings reach here at most
    :data:`~stresslab.metrics.projection.MAX_EMBEDDING_DIM` wide: see
    :class:`~stresslab.probes.predictions.Predictions`.)"""
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
