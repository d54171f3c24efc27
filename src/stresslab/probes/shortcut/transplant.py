"""The transplant test: paste a region of class-A images onto images of other classes and
count how often the prediction flips to A, against a control paste. Batched on the model's
device: each chunk of recipients is pasted and classified there."""

from __future__ import annotations

import functools
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
from stresslab.shards import Advance, LocalShards, ShardExecutor


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


def _classify_pairs(
    model: nn.Module, n: int, build: Callable[[Tensor], tuple[Tensor, Tensor]], batch_size: int
) -> tuple[Tensor, Tensor, float]:
    """Predictions (n,) of the pasted and of the control images ``build(chunk)`` makes for
    chunks of recipient numbers, on CPU, and the seconds spent."""
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
    return p, c, time.perf_counter() - t0


def _flip_test(p: Tensor, c: Tensor, target: int, seconds: float) -> FlipTest:
    """The test from the predictions of pasted ``p`` (n,) and control ``c`` (n,) images."""
    region = FlipCount(len(p), int((p == target).sum()))
    control = FlipCount(len(c), int((c == target).sum()))
    pv = fisher_greater(region.flips, region.n, control.flips, control.n)
    return FlipTest(region, control, pv, p, seconds)


def _paired(
    model: nn.Module,
    n: int,
    build: Callable[[Tensor], tuple[Tensor, Tensor]],
    target: int,
    batch_size: int,
) -> FlipTest:
    """Classify ``build(chunk)`` = (pasted, control) images for chunks of recipient numbers."""
    p, c, seconds = _classify_pairs(model, n, build, batch_size)
    return _flip_test(p, c, target, seconds)


def transplant_shard(
    model: nn.Module, data: dict[str, Tensor], advance: Advance, *, donors: Tensor, box: Box, batch_size: int
) -> tuple[Tensor, Tensor, float]:
    """Pasted and control predictions of one shard of recipients (``recipients``, their
    ``donor_of`` and control places ``ctop``, ``cleft``), and the seconds spent."""
    device = model_device(model)
    rec, don = data["recipients"].to(device, torch.float32), donors.to(device, torch.float32)
    d_of, ct, cl = (data[k].to(device) for k in ("donor_of", "ctop", "cleft"))

    def build(idx: Tensor) -> tuple[Tensor, Tensor]:
        r, d = rec[idx], don[d_of[idx]]
        same = (
            torch.full((len(idx),), box.top, device=device),
            torch.full((len(idx),), box.left, device=device),
        )
        return paste_boxes(r, d, box, *same), paste_boxes(r, d, box, ct[idx], cl[idx])

    return _classify_pairs(model, len(rec), build, batch_size)


def transplant_test(
    model: nn.Module,
    recipients: Tensor,
    donors: Tensor,
    box: Box,
    target: int,
    *,
    generator: torch.Generator,
    batch_size: int = 512,
    shards: ShardExecutor | None = None,
) -> tuple[FlipTest, Tensor]:
    """Paste ``box`` of class-``target`` images ``donors`` (m, C, H, W) in [0, 1] onto
    ``recipients`` (n, C, H, W) of other classes (recipient i gets a donor drawn with
    ``generator``) and count predictions of ``target``. Control: a box of the same size
    from a random place of the same donor, pasted at the same place. The draws are made
    here, the pasting and classifying in ``shards`` (default: one, in this process); the
    seconds are summed over shards. Returns the test and the donor number (n,) of each
    recipient."""
    n, _, h, w = recipients.shape
    data = {
        "recipients": recipients,
        "donor_of": torch.randint(len(donors), (n,), generator=generator),
        "ctop": torch.randint(h - box.height + 1, (n,), generator=generator),
        "cleft": torch.randint(w - box.width + 1, (n,), generator=generator),
    }
    fn = functools.partial(transplant_shard, donors=donors, box=box, batch_size=batch_size)
    parts = (shards or LocalShards()).map(fn, model, data, align=max(1, batch_size // 2))
    p = torch.cat([part[0] for part in parts])
    c = torch.cat([part[1] for part in parts])
    return _flip_test(p, c, target, sum(part[2] for part in parts)), data["donor_of"]


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
