"""Out-of-fold probabilities for every training image: k models, each trained on k-1 folds
with the run's own training code and settings, each predicting the fold it never saw."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.data.base import Split, to_float
from stresslab.data.indexed import rows
from stresslab.probes.base import batched_forward
from stresslab.progress import Advance, ProgressReporter
from stresslab.train.config import TrainConfig
from stresslab.train.loop import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutOfFold:
    """``probs``: (N, K) float32 softmax probabilities of each training image from the model
    that did not train on it; ``fold``: (N,) int64 the fold each image was held out in;
    ``seconds``: wall time of all folds (training and prediction); ``epochs``: per fold."""

    probs: Tensor
    fold: Tensor
    seconds: float
    epochs: int


class _FoldBar(ProgressReporter):
    """Forwards the trainer's bar to one shared bar, its label prefixed with the fold."""

    def __init__(self, advance: Callable[[int], None], prefix: str) -> None:
        super().__init__(enabled=False)
        self._advance = advance
        self._prefix = prefix

    @contextmanager
    def __call__(self, description: str, total: int) -> Iterator[Advance]:
        outer = self._advance
        prefix = self._prefix

        class _Forward(Advance):
            def __call__(self, n: int = 1) -> None:
                outer(n)

            def describe(self, text: str) -> None:
                describe = getattr(outer, "describe", None)
                if callable(describe):
                    describe(f"{prefix} {text}")

        yield _Forward(None, None)


def stratified_folds(labels: Tensor, k: int, seed: int) -> Tensor:
    """Fold number (N,) int64 in 0..k-1 of each example: scikit-learn's
    ``StratifiedKFold(k, shuffle=True, random_state=seed)``, so each fold keeps the class
    proportions (classes with fewer than k examples are spread as far as they go)."""
    from sklearn.model_selection import StratifiedKFold

    y = labels.cpu().numpy()
    fold = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only ..."
        for f, (_, held) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y)):
            fold[held] = f
    return torch.from_numpy(fold)


def out_of_fold_probs(
    split: Split,
    train_config: TrainConfig,
    model_factory: Callable[[], nn.Module],
    *,
    k: int,
    seed: int,
    device: torch.device,
    epochs: int | None = None,
    batch_size: int = 1024,
    track: Callable[[str, int], Any] | None = None,
) -> OutOfFold:
    """Cross-validated probabilities for ``split.train_x`` (N, C, H, W) uint8.

    Fold f trains ``model_factory()`` (initialized under ``torch.manual_seed(seed + f)``)
    with :func:`stresslab.train.loop.train` and ``train_config`` (``epochs`` overrides its
    epochs) on the other k-1 folds, validating on ``split.val_*`` as the run does, with
    training seed ``seed + f``; it then predicts its own fold. The cost is about k-1 times
    one training run of that many epochs. ``track(description, total)`` is a progress
    context (``ProbeContext.track``); one bar covers every fold's steps.

    Raises:
        ValueError: ``k < 2`` or more folds than training images.
    """
    n = len(split.train_y)
    if k < 2 or k > n:
        raise ValueError(f"cross-validation needs 2 <= folds <= {n} training images; got {k}")
    cfg = train_config if epochs is None else train_config.model_copy(update={"epochs": int(epochs)})
    fold = stratified_folds(split.train_y, k, seed)
    sizes = [int((fold != f).sum()) for f in range(k)]
    steps = sum(-(-s // cfg.batch_size) * cfg.epochs for s in sizes)
    probs = torch.full((n, split.info.num_classes), float("nan"))
    t0 = time.perf_counter()
    bar = track("label_issues: cross-validation", steps) if track is not None else _no_bar()
    with bar as advance:
        for f in range(k):
            held = torch.nonzero(fold == f).flatten()
            kept = torch.nonzero(fold != f).flatten()
            part = Split(
                split.info,
                rows(split.train_x, kept),  # a view stays a view: training reads it by batch
                split.train_y[kept],
                split.val_x,
                split.val_y,
                split.train_x[held],
                split.train_y[held],
                train_index=split.train_index[kept],
                val_index=split.val_index,
                test_index=split.train_index[held],
            )
            torch.manual_seed(seed + f)
            model = model_factory()
            t_fold = time.perf_counter()
            train(
                model,
                part,
                cfg,
                device=device,
                seed=seed + f,
                progress=_FoldBar(advance, f"fold {f + 1}/{k}"),
            )
            model.eval()
            logits = batched_forward(model, to_float(part.test_x), batch_size, device)
            probs[held] = F.softmax(logits, dim=1)
            log.info(
                "cross-validation fold %d/%d: %d training images, %d held out, %.1f s",
                f + 1,
                k,
                len(kept),
                len(held),
                time.perf_counter() - t_fold,
            )
            del model
    return OutOfFold(probs=probs, fold=fold, seconds=time.perf_counter() - t0, epochs=cfg.epochs)


@contextmanager
def _no_bar() -> Iterator[Callable[[int], None]]:
    def advance(n: int = 1) -> None:
        return None

    yield advance
