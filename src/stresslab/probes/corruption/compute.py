"""Evaluation under corruption: corrupt the sampled test images, run the model, score it.

The corruptions are generated on the fly (``stresslab.corruptions``), batch by batch on the
probe's device, from generators keyed by the run seed, the corruption's name, the severity
and the official test index of the batch's first image, so a result does not depend on
which other corruptions run, nor on how the images are sharded (``ctx.shards``). Everything undefined
(ECE over no images or over non-finite probabilities, accuracy over no images) is NaN here;
the presenting parts leave NaN out of metrics and tables and say why.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.corruptions import CORRUPTIONS
from stresslab.data.base import to_float
from stresslab.devices import model_device
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.probes.base import ProbeContext, batched_forward
from stresslab.shards import Advance, keyed_generator


def corruption_salt(name: str, severity: int) -> int:
    """A stable generator salt per (corruption, severity), independent of the other settings."""
    return zlib.crc32(f"corruption/{name}/{severity}".encode()) & 0x7FFFFFFF


def calibration_error(logits: Tensor, labels: Tensor, n_bins: int) -> float:
    """ECE (equal-width bins) of ``logits`` (N, K) against ``labels`` (N,); NaN when undefined.

    Undefined: no images, or non-finite logits (their probabilities mean nothing).
    """
    if len(labels) == 0 or not bool(torch.isfinite(logits).all()):
        return math.nan
    return expected_calibration_error(F.softmax(logits, 1), labels, n_bins)


def defined(value: float) -> float | None:
    """``value``, or None when it is undefined (NaN or infinite): for JSON records."""
    return float(value) if math.isfinite(value) else None


def hits(logits: Tensor, labels: Tensor) -> Tensor:
    """Correctness (N,) float64 in {0, 1}; a row with a non-finite logit counts as wrong."""
    return ((logits.argmax(1) == labels) & torch.isfinite(logits).all(1)).double()


def mean_or_nan(values: Tensor | np.ndarray) -> float:
    """The mean, or NaN over no values (an accuracy over zero images is undefined)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else math.nan


@dataclass(frozen=True)
class CorruptionGrid:
    """What is run: corruption names (registered), severities (sorted, in 1..5), ECE bins."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    n_bins: int


@dataclass(frozen=True)
class SampleLogits:
    """Model outputs on the sample: ``clean`` (N, K) and ``corrupted[c][s]`` (N, K), with labels (N,)."""

    labels: Tensor
    test_index: list[int]
    clean: Tensor
    corrupted: list[list[Tensor]]


@dataclass(frozen=True)
class CorruptionScores:
    """Per-image correctness of the model on clean and corrupted versions of the same images.

    ``correct`` (C, S, N) float64 in {0, 1} per corruption, severity and image;
    ``clean_correct`` (N,); ``ece`` (C,) ECE over all severities of a corruption and
    ``clean_ece``, NaN where undefined; ``nonfinite`` (C,) images x severities with
    non-finite logits (counted wrong), ``clean_nonfinite`` the same on clean images;
    ``test_index`` (N,) positions in the official test set.
    """

    grid: CorruptionGrid
    labels: Tensor
    test_index: list[int]
    correct: Tensor
    clean_correct: Tensor
    ece: tuple[float, ...]
    clean_ece: float
    nonfinite: tuple[int, ...]
    clean_nonfinite: int

    @property
    def corruptions(self) -> tuple[str, ...]:
        return self.grid.corruptions

    @property
    def severities(self) -> tuple[int, ...]:
        return self.grid.severities

    @property
    def n_bins(self) -> int:
        return self.grid.n_bins

    @property
    def n_images(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> np.ndarray:
        """Top-1 accuracy (C, S) per corruption and severity."""
        if self.n_images == 0:
            return np.full(tuple(self.correct.shape[:2]), np.nan)
        return self.correct.mean(dim=2).numpy()

    @property
    def clean_accuracy(self) -> float:
        return mean_or_nan(self.clean_correct)

    @property
    def mean_accuracy(self) -> float:
        """Mean corruption accuracy over every corruption and severity run."""
        return mean_or_nan(self.accuracy)

    @property
    def relative_drop(self) -> float:
        """(clean - mean corrupted) / clean; NaN when clean accuracy is 0 (a ratio to nothing)."""
        clean = self.clean_accuracy
        return (clean - self.mean_accuracy) / clean if clean > 0 else math.nan

    @property
    def mean_ece(self) -> float:
        """Mean ECE over the corruptions; NaN when any of them is undefined."""
        return float(np.mean(self.ece)) if self.ece else math.nan


@dataclass(frozen=True)
class ClassShift:
    """Clean against corrupted accuracy (mean over every corruption and severity) of one class."""

    index: int
    name: str
    n: int
    clean: float
    corrupted: float

    @property
    def drop(self) -> float:
        return self.clean - self.corrupted


@dataclass(frozen=True)
class Gallery:
    """One test image under every corruption: ``cells[c]`` (S, C, H, W) in [0, 1], ``preds[c]`` (S,)."""

    image: Tensor
    label: int
    clean_pred: int
    cells: list[Tensor]
    preds: list[list[int]]


def clean_logits(ctx: ProbeContext, subset: Tensor, images: Tensor) -> Tensor:
    """Clean logits (N, K) of the subset: reused from the shared predictions when they cover the test set."""
    pred = ctx.predictions
    if pred.logits.ndim == 2 and len(pred.logits) == len(ctx.split.test_y):
        return pred.logits[subset].float()
    return batched_forward(ctx.model, to_float(images), ctx.batch_size, ctx.device)


def corrupted_logits(
    ctx: ProbeContext, images: Tensor, index: Tensor, grid: CorruptionGrid
) -> list[list[Tensor]]:
    """Logits (N, K) per corruption and severity of uint8 ``images`` (N, C, H, W) whose
    official test indices are ``index`` (N,), in shards of whole batches (``ctx.shards``) of
    the run's batch size, at most :data:`~stresslab.devices.FORWARD_PIXELS` input pixels."""
    bs = ctx.forward_batch
    cells = len(grid.corruptions) * len(grid.severities)
    fn = functools.partial(corrupt_shard, grid=grid, seed=ctx.seed, batch_size=bs)
    # ``track`` is typed as an iterator in the contract but returns a context manager.
    tracker: Any = ctx.track("corruptions", cells * ctx.shards.count(len(images), bs))
    with tracker as advance:
        parts = ctx.shards.map(
            fn, ctx.model, {"x": images, "index": index}, align=bs, advance=advance, units=lambda n: cells
        )
    return [
        [torch.cat([part[c][s] for part in parts]) for s in range(len(grid.severities))]
        for c in range(len(grid.corruptions))
    ]


def corrupt_shard(
    model: nn.Module,
    data: dict[str, Tensor],
    advance: Advance,
    *,
    grid: CorruptionGrid,
    seed: int,
    batch_size: int,
) -> list[list[Tensor]]:
    """Logits (n, K) per corruption and severity of the shard's images ``data["x"]``.

    Each batch's corruption draws come from a generator keyed by the run seed, the
    corruption, the severity and the official test index ``data["index"]`` of the batch's
    first image: the same images get the same corruption whichever shard holds them.
    """
    images, index, device = data["x"], data["index"], model_device(model)
    out: list[list[Tensor]] = []
    for name in grid.corruptions:
        fn = CORRUPTIONS.get(name)
        row = []
        for s in grid.severities:
            chunks = []
            for i in range(0, len(images), batch_size):
                gen = keyed_generator(seed, corruption_salt(name, s), int(index[i]))
                xb = to_float(images[i : i + batch_size]).to(device)
                chunks.append(model(fn(xb, s, gen)).float().cpu())
            row.append(torch.cat(chunks) if chunks else torch.empty(0, 0))
            advance(1)
        out.append(row)
    return out


def _nonfinite_rows(logits: Tensor) -> int:
    return int((~torch.isfinite(logits).all(1)).sum())


def score(logits: SampleLogits, grid: CorruptionGrid) -> CorruptionScores:
    """Correctness and ECE from the logits of :func:`clean_logits` and :func:`corrupted_logits`."""
    labels, rows = logits.labels, logits.corrupted
    return CorruptionScores(
        grid=grid,
        labels=labels,
        test_index=logits.test_index,
        correct=torch.stack([torch.stack([hits(lg, labels) for lg in row]) for row in rows]),
        clean_correct=hits(logits.clean, labels),
        ece=tuple(calibration_error(torch.cat(row), labels.repeat(len(row)), grid.n_bins) for row in rows),
        clean_ece=calibration_error(logits.clean, labels, grid.n_bins),
        nonfinite=tuple(sum(_nonfinite_rows(lg) for lg in row) for row in rows),
        clean_nonfinite=_nonfinite_rows(logits.clean),
    )


def class_shifts(scores: CorruptionScores, class_names: Sequence[str]) -> list[ClassShift]:
    """Per class with test images: clean accuracy and corrupted accuracy (mean over the grid)."""
    shifted = scores.correct.mean(dim=(0, 1))  # (N,) share of corrupted versions classified right
    out = []
    for c, name in enumerate(class_names):
        mask = scores.labels == c
        count = int(mask.sum())
        if count:
            out.append(
                ClassShift(
                    c, name, count, float(scores.clean_correct[mask].mean()), float(shifted[mask].mean())
                )
            )
    return out


def gallery(
    ctx: ProbeContext, images: Tensor, labels: Tensor, clean: Tensor, grid: CorruptionGrid
) -> Gallery:
    """The first correctly classified image (else the first) under every corruption and severity."""
    correct = torch.nonzero(clean.argmax(1) == labels).flatten()
    pos = int(correct[0]) if len(correct) else 0
    x = to_float(images[pos : pos + 1]).to(ctx.device)
    cells, preds = [], []
    for name in grid.corruptions:
        fn = CORRUPTIONS.get(name)
        batch = torch.cat(
            [fn(x, s, ctx.generator(salt=corruption_salt(name, s) + 1)) for s in grid.severities]
        )
        preds.append(ctx.model(batch).argmax(1).cpu().tolist())
        cells.append(batch.cpu())
    return Gallery(x.cpu()[0], int(labels[pos]), int(clean[pos].argmax()), cells, preds)
