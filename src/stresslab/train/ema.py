"""An exponential moving average (EMA) of a model's weights, updated after every step.

After optimizer step ``t`` (1, 2, ...) every floating-point tensor of the model's state
(parameters and BatchNorm running statistics) is folded in as

    shadow <- d_t * shadow + (1 - d_t) * current,   d_t = min(decay, (1 + t) / (10 + t))

where the ramp ``(1 + t) / (10 + t)`` (TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``) keeps the first steps from weighting the random initialization for
``1 / (1 - decay)`` steps. Integer buffers (BatchNorm's batch counter) are copied. The
average is what a run validates, keeps and probes; the optimizer keeps stepping the raw
weights. Polyak and Juditsky (1992); as used in airbench and timm's ``ModelEmaV2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_decay_at(step: int, decay: float) -> float:
    """The decay ``d_t`` used for update number ``step`` (>= 1), in [0.18, decay]."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The running average of ``model.state_dict()``; see the module docstring.

    Args:
        model: the model being trained; the average starts as a copy of its state.
        decay: the long-run decay in (0, 1); ``1 / (1 - decay)`` steps is its horizon.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        self._others = [k for k, v in self.shadow.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold in the model's current weights (call after each optimizer step)."""
        self.updates += 1
        weight = 1.0 - ema_decay_at(self.updates, self.decay)
        current = model.state_dict()
        torch._foreach_lerp_(
            [self.shadow[k] for k in self._floats], [current[k].detach() for k in self._floats], weight
        )
        for k in self._others:
            self.shadow[k].copy_(current[k])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint stores: the number of updates and the averaged tensors (on CPU)."""
        return {"updates": self.updates, "shadow": {k: v.detach().cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict` output (tensors go to the device they are on now)."""
        shadow = state["shadow"]
        if not isinstance(shadow, dict) or set(shadow) != set(self.shadow):
            raise ValueError("the saved EMA does not match the model's weights")
        for k, v in self.shadow.items():
            v.copy_(shadow[k])
        self.updates = int(state["updates"])  # type: ignore[call-overload]
