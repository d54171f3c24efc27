"""The shared base of every attribution method: one hook, ``_attribute``, per method.

The base handles what every method needs: inference scope (eval mode, frozen parameters,
restored on exit), batching, moving data to the model's device, reducing channels and
upsampling to the input's size. A method file overrides ``_attribute`` (and, where its
raw output is signed or channel-wise, ``reduce_channels``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.errors import ConfigError
from stresslab.registry import Registry
from stresslab.scoped import inference_scope

FILL_CHOICES = ("gray", "mean", "zero")


def fill_value(fill: str | float, channels: int, mean: Sequence[float] | None = None) -> Tensor:
    """A replacement pixel as a (1, C, 1, 1) float tensor in [0, 1].

    ``fill`` is ``"gray"`` (0.5), ``"mean"`` (the dataset's per-channel mean, ``mean``),
    ``"zero"`` (black) or a number in [0, 1].
    """
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        if not 0.0 <= float(fill) <= 1.0:
            raise ConfigError(f"fill value {fill} is outside [0, 1]")
        values = [float(fill)] * channels
    elif fill == "gray":
        values = [0.5] * channels
    elif fill == "zero":
        values = [0.0] * channels
    elif fill == "mean":
        if mean is None or len(mean) != channels:
            raise ConfigError("fill 'mean' needs the dataset's per-channel mean")
        values = [float(m) for m in mean]
    else:
        raise ConfigError(f"unknown fill {fill!r}; choose one of {', '.join(FILL_CHOICES)} or a number")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has neither)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


class Attribution(ABC):
    """An attribution method: images and target classes in, one (H, W) map per image out.

    Subclasses set ``name`` and ``label`` and override ``_attribute``. Higher map values
    mean "more evidence for the target class"; ``signed`` says whether maps can be negative.
    ``cost`` is the number of forward passes per image, used to size batches.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    signed: ClassVar[bool] = False

    @property
    def cost(self) -> int:
        return 1

    def attribute(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor,
        *,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Maps (N, H, W) float32 on CPU for images ``x`` (N, C, H, W) in [0, 1].

        ``target`` (N,) int64 names the class to explain for each image. ``batch_size``
        is the number of forward passes per chunk (a method with ``cost`` passes per image
        takes ``batch_size // cost`` images at a time). ``generator`` seeds stochastic
        methods; it is drawn from on the CPU so results do not depend on the device.
        The model leaves in the mode it came in with its parameter gradients untouched.
        """
        if x.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
        if target.shape != (x.shape[0],):
            raise ValueError(f"target must be ({x.shape[0]},); got {tuple(target.shape)}")
        device = model_device(model)
        size = (x.shape[2], x.shape[3])
        per_chunk = max(1, batch_size // max(1, self.cost))
        out: list[Tensor] = []
        with inference_scope(model):
            for i in range(0, len(x), per_chunk):
                xb = x[i : i + per_chunk].to(device, torch.float32)
                tb = target[i : i + per_chunk].to(device, torch.long)
                raw = self._attribute(model, xb, tb, generator)
                out.append(self.to_pixels(raw, size).detach().float().cpu())
        if not out:
            return torch.empty(0, *size)
        return torch.cat(out)

    @abstractmethod
    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """The method itself: (n, C, H, W) images on the model's device -> (n, C', h, w)."""

    def reduce_channels(self, raw: Tensor) -> Tensor:
        """(n, C', h, w) -> (n, h, w). Default: max of absolute values over channels."""
        return raw.abs().amax(dim=1)

    def to_pixels(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        """Reduce channels, then upsample bilinearly (half-pixel centers) to ``size``."""
        m = raw[:, 0] if raw.shape[1] == 1 else self.reduce_channels(raw)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return m


ATTRIBUTIONS: Registry[type[Attribution]] = Registry("attribution method")
