"""The ``data_audit`` probe: are some images dark, blurred, duplicated or leaked, and does
it hurt the model?"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.data.sampling import stratified_sample
from stresslab.probes.base import Headline, Offer, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.data_audit import present
from stresslab.probes.data_audit.duplicates import (
    Pair,
    exact_across,
    exact_within,
    flagged,
    near_across,
    near_within,
)
from stresslab.probes.data_audit.flags import fences, flag
from stresslab.probes.data_audit.properties import image_properties, pixel_signature

log = logging.getLogger(__name__)


@dataclass
class AuditFlags(Offer):
    """The official test indices flagged per issue (``issues``), and each fenced issue's
    threshold (``thresholds``, in its property's units)."""

    issues: dict[str, list[int]]
    thresholds: dict[str, float]


@register_probe("data_audit")
class DataAuditProbe(Probe):
    """Image-quality issues, duplicates, train/test leakage and class imbalance, in the
    training and test images; for each issue the test error rate on flagged vs other images
    with Fisher's exact test.

    Properties (:mod:`.properties`) are computed on a class-stratified sample of ``max_train``
    training images and ``ctx.sample(max_test)`` test images (``None``: all); thresholds are
    Tukey fences (``fence`` x IQR) of the training sample (:mod:`.flags`). Exact duplicates
    (hash of the uint8 pixels) are searched in the whole sets, near duplicates (cosine >=
    ``near_threshold`` between 16 x 16 mean-centred gray signatures, i.e. their Pearson
    correlation) within and across the samples.
    """

    order = 15
    offers = AuditFlags
    headlines = (
        Headline("n_test_leaked", "test images leaked from training"),
        Headline("n_test_flagged", "test images with a quality issue"),
    )

    def __init__(
        self,
        *,
        max_train: int | None = 10000,
        max_test: int | None = 5000,
        fence: float = 3.0,
        near_threshold: float = 0.99,
        gallery_size: int = 8,
    ) -> None:
        for name, size in (("max_train", max_train), ("max_test", max_test)):
            if size is not None and int(size) < 2:
                raise ValueError(f"{name} must be >= 2 or null (all), got {size}")
        if fence <= 0:
            raise ValueError(f"fence must be > 0, got {fence}")
        if not -1.0 <= near_threshold <= 1.0:
            raise ValueError(f"near_threshold is a cosine similarity in [-1, 1], got {near_threshold}")
        self.max_train, self.max_test, self.fence = max_train, max_test, fence
        self.near_threshold, self.gallery_size = near_threshold, gallery_size

    def needs_training_data(self) -> str | None:
        """Always a reason: the audit compares the training set with the test set."""
        return (
            "it audits the training set (class balance, duplicates within and across train and "
            "test, train/test drift), and there is none"
        )

    def _train_positions(self, ctx: ProbeContext) -> Tensor:
        y = ctx.split.train_y
        if not self.max_train or self.max_train >= len(y):
            return torch.arange(len(y))
        return stratified_sample(y, int(self.max_train), seed=ctx.sample_seed)

    def _duplicates(self, ctx: ProbeContext, tr_pos: Tensor, te_pos: Tensor) -> dict[str, list[Pair]]:
        s = ctx.split
        tr_sig, te_sig = pixel_signature(s.train_x[tr_pos]), pixel_signature(s.test_x[te_pos])
        t = self.near_threshold
        return {
            "exact:train": exact_within(s.train_x, s.train_y),
            "exact:test": exact_within(s.test_x, s.test_y),
            "exact:test-train": exact_across(s.train_x, s.train_y, s.test_x, s.test_y),
            "near:train": near_within(tr_sig, tr_pos, s.train_y, t),
            "near:test": near_within(te_sig, te_pos, s.test_y, t),
            "near:test-train": near_across(te_sig, te_pos, tr_sig, tr_pos, s.test_y, s.train_y, t),
        }

    def run(self, ctx: ProbeContext) -> ProbeResult:
        s = ctx.split
        res = ProbeResult()
        tr_pos, te_pos = self._train_positions(ctx), ctx.sample(self.max_test, "data_audit")
        with ctx.track("data_audit: image properties", 1) as advance:
            tr_props, te_props = image_properties(s.train_x[tr_pos]), image_properties(s.test_x[te_pos])
            advance(1)
        limits = fences(tr_props, self.fence)
        tr_flags, te_flags = flag(tr_props, limits), flag(te_props, limits)
        if s.info.channels != 3:
            tr_flags.pop("grayscale"), te_flags.pop("grayscale")
        dups = self._duplicates(ctx, tr_pos, te_pos)
        n_test = len(s.test_y)
        # Test-side duplicate flags over the whole test set (exact: whole sets; near: the sample).
        test_dup = {
            "exact_duplicate": flagged(dups["exact:test"], n_test, "both"),
            "near_duplicate": flagged(dups["near:test"], n_test, "both"),
            "leaked_from_train": flagged(dups["exact:test-train"] + dups["near:test-train"], n_test),
            "leaked_other_label": flagged(
                [p for p in dups["exact:test-train"] + dups["near:test-train"] if not p.same_label], n_test
            ),
        }
        issues: dict[str, Tensor] = {k: v for k, v in te_flags.items()}
        issues.update({k: v[te_pos] for k, v in test_dup.items()})
        correct = ctx.predictions.correct[te_pos]
        res.data["samples"] = {"train": len(tr_pos), "test": len(te_pos)}
        res.data["settings"] = {
            "max_train": self.max_train,
            "max_test": self.max_test,
            "fence": self.fence,
            "near_threshold": self.near_threshold,
        }
        res.data["fences"] = {k: vars(f) for k, f in limits.items()}
        present.issue_table(res, limits, tr_flags, issues, correct, len(tr_pos))
        present.duplicate_section(res, ctx, dups)
        present.class_balance(res, ctx)
        present.size_note(res, ctx)
        present.gallery(res, ctx, tr_pos, te_pos, tr_flags, issues, self.gallery_size)
        quality = torch.zeros(len(te_pos), dtype=torch.bool)
        for v in te_flags.values():
            quality |= v
        res.metrics["n_test_flagged"] = int(quality.sum())
        res.metrics["n_test_leaked"] = int(test_dup["leaked_from_train"].sum())
        res.offer = AuditFlags(
            issues={
                k: [int(s.test_index[te_pos[i]]) for i in torch.nonzero(v).flatten().tolist()]
                for k, v in issues.items()
            },
            thresholds={k: f.value for k, f in limits.items()},
        )
        return res
