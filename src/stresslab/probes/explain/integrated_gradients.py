"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks",
ICML 2017), through Captum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from captum.attr import IntegratedGradients as CaptumIG
from torch import Tensor, nn

from stresslab.probes.explain.base import ATTRIBUTIONS, Attribution, fill_value


@ATTRIBUTIONS.register("integrated_gradients")
class IntegratedGradients(Attribution):
    """``(x - x') * integral of d y_c / d x along the line from baseline x' to x``.

    ``steps`` points of Captum's Gauss-Legendre rule; the baseline is a plain image of
    ``baseline`` ("zero", "gray", "mean" or a number). The map is the channel sum (signed).
    Note: pixels equal to the baseline get zero attribution by construction, so a
    zero baseline says nothing about a black background.
    """

    name: ClassVar[str] = "integrated_gradients"
    label: ClassVar[str] = "Integrated Gradients"
    signed: ClassVar[bool] = True

    def __init__(
        self, steps: int = 32, baseline: str | float = "zero", mean: Sequence[float] | None = None
    ) -> None:
        if steps < 2:
            raise ValueError("integrated gradients needs steps >= 2")
        self.steps = steps
        self.baseline = baseline
        self.mean = mean

    @property
    def cost(self) -> int:
        return self.steps

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        base = fill_value(self.baseline, x.shape[1], self.mean).to(x.device).expand_as(x).contiguous()
        with torch.enable_grad():
            attr = CaptumIG(model).attribute(x, baselines=base, target=target, n_steps=self.steps)
        return attr.detach()

    def reduce_channels(self, raw: Tensor) -> Tensor:
        return raw.sum(dim=1)
