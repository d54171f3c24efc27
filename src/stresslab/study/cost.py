"""What a model costs: parameters and FLOPs."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stresslab.scoped import inference_scope


def model_cost(model: nn.Module, channels: int, height: int, width: int) -> dict[str, float]:
    """``params`` (count) and ``flops`` of one forward pass on one (1, C, H, W) image, as
    counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs;
    convolutions and matrix products only)."""
    x = torch.zeros(1, channels, height, width)
    counter = FlopCounterMode(display=False)
    with inference_scope(model), torch.no_grad(), counter:
        model(x)
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "flops": float(counter.get_total_flops()),
    }
