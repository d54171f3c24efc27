"""The data randomization test, the second sanity check of Adebayo et al., "Sanity Checks for
Saliency Maps" (NeurIPS 2018): a copy of the model trained on the same images with permuted
labels has learned nothing about the classes, so a method that explains the model gives it
different maps; a method whose maps barely change shows the image, not what the model learned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.data.base import Split
from stresslab.errors import ConfigError
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.compute import FORWARD_BATCH, Explained, noise_generator
from stresslab.probes.explain.quality import map_agreement, randomized_copy

log = logging.getLogger(__name__)

SEED_PERMUTATION, SEED_LABEL_MODEL = 19, 23
_PATH = "probes.explain.data_randomization"


@dataclass(frozen=True)
class DataRandomizationSettings:
    """``epochs`` to train the copy on permuted labels (the run's recipe otherwise, fewer
    epochs allowed), and ``threshold``: a method fails when the median rank correlation of
    its maps of the two models is at least this."""

    epochs: int
    threshold: float = 0.5

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> DataRandomizationSettings | None:
        """Settings from ``{epochs: N, threshold: t}``; ``None`` (the test off) from ``None``.
        A wrong key or value is a :class:`ConfigError` naming it."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_PATH}: expected a mapping like {{epochs: 3}} or null, got {value!r}")
        unknown = sorted(set(value) - {"epochs", "threshold"})
        if unknown:
            raise ConfigError(f"{_PATH}.{unknown[0]}: unknown setting; accepted: epochs, threshold")
        epochs = value.get("epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"{_PATH}.epochs: expected an integer >= 1, got {epochs!r}")
        threshold = value.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 < threshold <= 1:
            raise ConfigError(f"{_PATH}.threshold: expected a number in (-1, 1], got {threshold!r}")
        return cls(int(epochs), float(threshold))


@dataclass
class DataRandomization:
    """What the test found: the copy's training (``epochs`` of it, ``run_epochs`` of the run's
    recipe, ``fit``: its accuracy on the permuted training labels, in [0, 1]), and per method
    the per-case correlations (N,) float64 (NaN where a map is constant) and the copy's maps
    (N, H, W)."""

    settings: DataRandomizationSettings
    run_epochs: int
    fit: float
    n_train: int
    spearman: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        """Median correlation of ``name`` over the cases with one, the mean of the two middle
        values for an even count (``None`` if none)."""
        rho = self.spearman[name]
        rho = rho[torch.isfinite(rho)]
        return float(torch.quantile(rho.double(), 0.5)) if len(rho) else None

    def mean(self, name: str) -> float | None:
        rho = self.spearman[name]
        rho = rho[torch.isfinite(rho)]
        return float(rho.mean()) if len(rho) else None

    def passed(self, name: str) -> bool | None:
        """Below the threshold (the maps changed); ``None`` when undefined."""
        m = self.median(name)
        return None if m is None else m < self.settings.threshold


def permuted_labels(split: Split, generator: torch.Generator) -> Split:
    """``split`` with its training labels permuted (same images, same class counts), no
    validation set (so training keeps its last weights) and the same test set."""
    perm = torch.randperm(len(split.train_y), generator=generator)
    empty = split.val_x[:0]
    return Split(
        split.info,
        split.train_x,
        split.train_y[perm],
        empty,
        split.val_y[:0],
        split.test_x,
        split.test_y,
        train_index=split.train_index,
        test_index=split.test_index,
    )


def label_randomized_model(
    ctx: ProbeContext, settings: DataRandomizationSettings
) -> tuple[nn.Module, float, int]:
    """A copy of ``ctx.model`` with fresh weights trained by the run's recipe
    (``ctx.train_config``, ``epochs`` and no early stopping) on permuted training labels.
    Weights are re-initialized by each layer's ``reset_parameters`` (a layer without one keeps
    the model's weights). Returns the copy (eval mode), its accuracy on the permuted labels
    and its training-set size."""
    from stresslab.progress import ProgressReporter
    from stresslab.train.loop import evaluate, train

    if ctx.train_config is None:
        raise ValueError("the data randomization test needs the run's training recipe (ctx.train_config)")
    cfg = ctx.train_config.model_copy(update={"epochs": settings.epochs, "early_stopping_patience": None})
    split = permuted_labels(ctx.split, ctx.generator(SEED_PERMUTATION))
    copy = randomized_copy(ctx.model, ctx.seed * 1_000_003 + SEED_LABEL_MODEL, mode="full")
    log.info("data randomization test: training a copy on permuted labels for %d epochs", settings.epochs)
    progress = ctx.progress if isinstance(ctx.progress, ProgressReporter) else None
    train(copy, split, cfg, device=ctx.device, seed=ctx.seed + SEED_LABEL_MODEL, progress=progress)
    _, fit = evaluate(copy, split.train_x, split.train_y, cfg.eval_batch_size, ctx.device)
    for p in copy.parameters():
        p.grad = None
    return copy.eval(), fit, len(split.train_y)


def data_randomization_test(
    ctx: ProbeContext,
    explained: Explained,
    methods: Mapping[str, Attribution],
    settings: DataRandomizationSettings,
) -> DataRandomization:
    """Each method's maps of the explained cases on the label-randomized copy, compared per
    case with its maps of the model (Spearman rank correlation of absolute values, as in
    :func:`~stresslab.probes.explain.quality.randomization_test`), for the same target class
    (the model's prediction) and, for stochastic methods, the same noise."""
    assert ctx.train_config is not None
    copy, fit, n_train = label_randomized_model(ctx, settings)
    found = DataRandomization(settings, ctx.train_config.epochs, fit, n_train)
    pred = torch.tensor([c.pred for c in explained.cases])
    index = [c.index for c in explained.cases]
    step = max(1, ctx.batch_size)  # the batches the maps were computed in (explain_shard)
    try:
        for name, method in methods.items():
            bs = ctx.batch_size if method.gradient_based else max(ctx.batch_size, FORWARD_BATCH)
            maps = explained.methods[name].maps
            parts = [
                map_agreement(
                    method,
                    copy,
                    explained.images[i : i + step],
                    pred[i : i + step],
                    maps[i : i + step],
                    bs,
                    noise_generator(method, ctx.seed, index[i]),
                )
                for i in range(0, len(index), step)
            ]
            found.spearman[name] = torch.cat([rho for rho, _ in parts])
            found.maps[name] = torch.cat([other for _, other in parts])
    finally:
        del copy
    return found
