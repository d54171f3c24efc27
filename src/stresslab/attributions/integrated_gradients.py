"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks",
ICML 2017), through Captum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from captum.attr import IntegratedGradients as CaptumIG
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, check_fill, fill_value, register_attribution
from stresslab.data.base import DatasetInfo


@register_attribution("integrated_gradients")
class IntegratedGradients(Attribution):
    """``(x - x') * integral of d y_c / d x along the line from baseline x' to x``.

    ``steps`` points of Captum's Gauss-Legendre rule; the baseline is a plain image of
    ``baseline`` ("zero", "gray", "mean" or a number; ``mean`` is the dataset's
    per-channel mean, filled in by :meth:`prepare`). The map is the channel sum (signed).
    Note: pixels equal to the baseline get zero attribution by construction, so a
    zero baseline says nothing about a black background.
    """

    label: ClassVar[str] = "Integrated Gradients"
    options: ClassVar[tuple[str, ...]] = ("steps", "baseline")
    signed: ClassVar[bool] = True

    def __init__(
        self, steps: int = 32, baseline: str | float = "zero", mean: Sequence[float] | None = None
    ) -> None:
        if steps < 2:
            raise ValueError("integrated gradients needs steps >= 2")
        check_fill(baseline)
        self.steps = steps
        self.baseline = baseline
        self.mean = mean

    @property
    def cost(self) -> int:
        return self.steps

    def prepare(self, model: nn.Module, info: DatasetInfo) -> tuple[Attribution, list[str]]:
        """Take the dataset's channel mean (for a ``mean`` baseline)."""
        return self.with_changes(mean=tuple(info.mean)), []

    def baseline_fill(self, channels: int) -> Tensor:
        return fill_value(self.baseline, channels, self.mean)

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        base = self.baseline_fill(x.shape[1]).to(x.device).expand_as(x).contiguous()
        with torch.enable_grad():
            attr = CaptumIG(model).attribute(x, baselines=base, target=target, n_steps=self.steps)
        return attr.detach()

    def reduce_channels(self, raw: Tensor) -> Tensor:
        return raw.sum(dim=1)
