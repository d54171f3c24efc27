"""The transplant test: paste a region of class-A images onto images of other classes and
count how often the prediction flips to A, against a control paste. Batched on the model's
device: each chunk of recipients is pasted and classified there."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.devices import model_device
from stresslab.metrics.proportions import fisher_greater, wilson_interval
from stresslab.probes.shortcut.regions import Box
from stresslab.scoped import inference_scope


@dataclass(frozen=True)
class FlipCount:
    """``flips`` of ``n`` pasted images classified as the target class."""

    n: int
    flips: int

    @property
    def rate(self) -> float:
        """flips / n in [0, 1]; NaN for n = 0."""
        return self.flips / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the rate."""
        return wilson_interval(self.flips, self.n)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval
        out: dict[str, Any] = {"n": self.n, "flips": self.flips}
        if self.n:
            out.update(rate=round(self.rate, 6), ci_low=round(lo, 6), ci_high=round(hi, 6))
        return out


@dataclass(frozen=True)
class FlipTest:
    """A paste and its control on the same recipients.

    ``p_value``: one-sided Fisher exact test that the paste flips more often than the
    control. ``ratio``: paste rate over control rate (NaN when the control never flips).
    ``preds``: (n,) int64 predictions after the paste; ``seconds``: time of both passes.
    """

    region: FlipCount
    control: FlipCount
    p_value: float
    preds: Tensor
    seconds: float

    @property
    def ratio(self) -> float:
        c, r = self.control.rate, self.region.rate
        return r / c if c > 0 else math.nan

    def significant(self, alpha: float, min_ratio: float, min_rate: float) -> bool:
        """p < ``alpha``, rate >= ``min_rate`` and rate >= ``min_ratio`` x the control's
        (always true when the control never flips)."""
        rate = self.region.rate
        if not math.isfinite(rate) or rate < min_rate or self.p_value >= alpha:
            return False
        return self.control.flips == 0 or rate >= min_ratio * self.control.rate

    @property
    def images(self) -> int:
        return self.region.n + self.control.n


def paste_boxes(recipients: Tensor, donors: Tensor, box: Box, src_top: Tensor, src_left: Tensor) -> Tensor:
    """Copies of ``recipients`` (n, C, H, W) with ``box`` replaced by the same-size patch of
    ``donors`` (n, C, H, W) whose top-left corner is at (``src_top[i]``, ``src_left[i]``)."""
    n, c = recipients.shape[:2]
    dev = recipients.device
    rows = (src_top.to(dev)[:, None] + torch.arange(box.height, device=dev))[:, None, :, None]
    cols = (src_left.to(dev)[:, None] + torch.arange(box.width, device=dev))[:, None, None, :]
    i = torch.arange(n, device=dev)[:, None, None, None]
    ch = torch.arange(c, device=dev)[None, :, None, None]
    out = recipients.clone()
    out[:, :, box.rows, box.cols] = donors[i, ch, rows, cols]
    return out


def _paired(
    model: nn.Module,
    n: int,
    build: Callable[[Tensor], tuple[Tensor, Tensor]],
    target: int,
    batch_size: int,
) -> FlipTest:
    """Classify ``build(chunk)`` = (pasted, control) images for chunks of recipient numbers."""
    device = model_device(model)
    preds, ctrl = [], []
    chunk = max(1, batch_size // 2)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with inference_scope(model), torch.inference_mode():
        for start in range(0, n, chunk):
            idx = torch.arange(start, min(start + chunk, n), device=device)
            pasted, ctl = build(idx)
            out = model(torch.cat([pasted, ctl])).argmax(dim=1)
            preds.append(out[: len(idx)])
            ctrl.append(out[len(idx) :])
    p = torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)
    c = torch.cat(ctrl).cpu() if ctrl else torch.empty(0, dtype=torch.long)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    region = FlipCount(n, int((p == target).sum()))
    control = FlipCount(n, int((c == target).sum()))
    pv = fisher_greater(region.flips, region.n, control.flips, control.n)
    return FlipTest(region, control, pv, p, seconds)


def transplant_test(
    model: nn.Module,
    recipients: Tensor,
    donors: Tensor,
    box: Box,
    target: int,
    *,
    generator: torch.Generator,
    batch_size: int = 512,
) -> tuple[FlipTest, Tensor]:
    """Paste ``box`` of class-``target`` images ``donors`` (m, C, H, W) in [0, 1] onto
    ``recipients`` (n, C, H, W) of other classes (recipient i gets a donor drawn with
    ``generator``) and count predictions of ``target``. Control: a box of the same size
    from a random place of the same donor, pasted at the same place. Returns the test and
    the donor number (n,) of each recipient."""
    device = model_device(model)
    n, _, h, w = recipients.shape
    donor_of = torch.randint(len(donors), (n,), generator=generator)
    ctop = torch.randint(h - box.height + 1, (n,), generator=generator)
    cleft = torch.randint(w - box.width + 1, (n,), generator=generator)
    rec, don = recipients.to(device, torch.float32), donors.to(device, torch.float32)
    d_of, ct, cl = donor_of.to(device), ctop.to(device), cleft.to(device)

    def build(idx: Tensor) -> tuple[Tensor, Tensor]:
        r, d = rec[idx], don[d_of[idx]]
        same = (
            torch.full((len(idx),), box.top, device=device),
            torch.full((len(idx),), box.left, device=device),
        )
        return paste_boxes(r, d, box, *same), paste_boxes(r, d, box, ct[idx], cl[idx])

    return _paired(model, n, build, target, batch_size), donor_of


def background_test(
    model: nn.Module,
    recipients: Tensor,
    mask: Tensor,
    class_mean: Tensor,
    all_mean: Tensor,
    target: int,
    *,
    batch_size: int = 512,
) -> FlipTest:
    """Paint the class-``target`` mean image ``class_mean`` (C, H, W) over the pixels
    ``mask`` (H, W) bool (the class's background) of ``recipients`` (n, C, H, W) and count
    predictions of ``target``. Control: the mean image of all classes ``all_mean`` painted
    over the same pixels."""
    device = model_device(model)
    rec = recipients.to(device, torch.float32)
    m = mask.to(device)[None, None]
    cm, am = class_mean.to(device, torch.float32)[None], all_mean.to(device, torch.float32)[None]

    def build(idx: Tensor) -> tuple[Tensor, Tensor]:
        r = rec[idx]
        return torch.where(m, cm, r), torch.where(m, am, r)

    return _paired(model, len(rec), build, target, batch_size)
