"""Linear probe: logistic regression on frozen, standardized embeddings, train -> test."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass
class LinearProbeResult:
    """Test accuracy in [0, 1] of a linear classifier on embeddings, and whether it converged."""

    accuracy: float
    train_accuracy: float
    converged: bool
    n_train: int
    n_test: int


def linear_probe(
    train_emb: Tensor,
    train_y: Tensor,
    test_emb: Tensor,
    test_y: Tensor,
    *,
    c: float = 1.0,
    max_iter: int = 500,
) -> LinearProbeResult:
    """Fit ``StandardScaler -> LogisticRegression(C=c, lbfgs, multinomial)`` on (N, D) training
    embeddings with labels (N,), score on the test embeddings (M, D), (M,).

    The standard check of a representation (e.g. Chen et al. 2020, SimCLR, linear
    evaluation): the features stay fixed and only a linear map is learned. ``converged`` is
    False when lbfgs stopped at ``max_iter``.
    """
    if len(train_y) == 0 or len(test_y) == 0:
        raise ValueError("the linear probe needs training and test embeddings")
    if len(np.unique(train_y.numpy())) < 2:
        raise ValueError("the linear probe needs at least two classes among the training embeddings")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    # One BLAS/OpenMP thread: on a shared 2-core machine two spinning threads made this fit 30x
    # slower (3.9 s against 0.12 s for 6,000 x 256 features).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always", ConvergenceWarning)
        pipe.fit(train_emb.float().numpy(), train_y.numpy())
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return LinearProbeResult(
        accuracy=float(pipe.score(test_emb.float().numpy(), test_y.numpy())),
        train_accuracy=float(pipe.score(train_emb.float().numpy(), train_y.numpy())),
        converged=converged,
        n_train=len(train_y),
        n_test=len(test_y),
    )
