"""The shared base of every attribution method: one hook, ``_attribute``, per method.

The base handles what every method needs: inference scope (eval mode, frozen parameters,
restored on exit), batching, moving data to the model's device, reducing channels and
upsampling to the input's size. A method file overrides ``_attribute`` (and, where its
raw output is signed or channel-wise, ``reduce_channels``), declares its capabilities as
class attributes and registers itself with ``@register_attribution(name)``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.devices import images_per_pass, model_device
from stresslab.errors import ConfigError
from stresslab.registry import Registry
from stresslab.scoped import inference_scope

if TYPE_CHECKING:
    from stresslab.data.base import DatasetInfo

FILL_CHOICES = ("gray", "mean", "zero")


def check_fill(fill: str | float) -> None:
    """Raise ``ValueError`` unless ``fill`` is one of ``FILL_CHOICES`` or a number in [0, 1]."""
    if isinstance(fill, bool):
        raise ValueError(f"fill {fill!r} is not a fill; choose {', '.join(FILL_CHOICES)} or a number")
    if isinstance(fill, (int, float)):
        if not 0.0 <= float(fill) <= 1.0:
            raise ValueError(f"fill value {fill} is outside [0, 1]")
    elif fill not in FILL_CHOICES:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILL_CHOICES)} or a number")


def fill_value(fill: str | float, channels: int, mean: Sequence[float] | None = None) -> Tensor:
    """A replacement pixel as a (1, C, 1, 1) float tensor in [0, 1].

    ``fill`` is ``"gray"`` (0.5), ``"mean"`` (the dataset's per-channel mean, ``mean``),
    ``"zero"`` (black) or a number in [0, 1].
    """
    try:
        check_fill(fill)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if isinstance(fill, (int, float)):
        values = [float(fill)] * channels
    elif fill == "gray":
        values = [0.5] * channels
    elif fill == "zero":
        values = [0.0] * channels
    else:
        if mean is None or len(mean) != channels:
            raise ConfigError("fill 'mean' needs the dataset's per-channel mean")
        values = [float(m) for m in mean]
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


@dataclass(frozen=True)
class OcclusionMaps:
    """Occlusion results for T targets per image, on CPU.

    ``base``: (N, T) softmax probability of each target on the unoccluded image.
    ``grid``: (N, T, R, S) probability with the patch at each window position (row-major
    positions ``r * stride``, ``s * stride``): the confidence matrix of seed studies.
    ``drop``: (N, T, H, W) per pixel, the mean over the windows covering it of
    ``base - occluded probability`` (Captum's ``Occlusion`` attribution).
    ``confidence``: (N, T, H, W) per pixel, the mean occluded probability (``base - drop``).
    """

    base: Tensor
    grid: Tensor
    drop: Tensor

    @property
    def confidence(self) -> Tensor:
        return self.base[:, :, None, None] - self.drop


AttributionT = TypeVar("AttributionT", bound="Attribution")


class Attribution(ABC):
    """An attribution method: images and target classes in, one (H, W) map per image out.

    Subclasses set ``label``, override ``_attribute`` and register with
    :func:`register_attribution` (which sets ``name``). Higher map values mean "more evidence for
    the target class". The constructor takes the method's settings, named in ``options``
    (``probes.explain.methods.<name>.<option>`` in a config).

    Capabilities, read by the probe instead of method names:

    - ``signed``: maps can be negative (shown on a diverging scale).
    - ``gradient_based``: needs a backward pass; ``False`` means forward passes only, so
      the probe gives it large batches.
    - ``stochastic``: draws noise from the ``generator`` it is given.
    - ``needs_conv_layer``: explains the activations of a conv layer (``layer`` option;
      the model's ``cam_layer`` by default). The probe measures the background share on the
      first such method.
    - ``has_true_class_variant``: the probe also maps the true class ("why X and not Y").
    - ``has_confidence_map``: :meth:`confidence_maps` gives the target's probability with
      each region hidden, for several targets in one pass.
    - ``needs_attention``: reads a vision transformer's attention weights; the probe runs it
      only where :meth:`unavailable` finds them and says why it skipped it otherwise.

    ``cost`` is the number of forward passes per image, used to size batches.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    signed: ClassVar[bool] = False
    gradient_based: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False
    needs_conv_layer: ClassVar[bool] = False
    has_true_class_variant: ClassVar[bool] = False
    has_confidence_map: ClassVar[bool] = False
    needs_attention: ClassVar[bool] = False

    @property
    def cost(self) -> int:
        return 1

    def used_settings(self) -> dict[str, Any]:
        """The values of ``options`` this instance uses (JSON-safe), for the run's record."""
        return {k: getattr(self, k) for k in self.options}

    def prepare(self, model: nn.Module, info: DatasetInfo) -> tuple[Attribution, list[str]]:
        """A copy fitted to ``model`` and the dataset (``info``: image size, channel mean),
        and warnings about any setting it had to change. The default changes nothing."""
        return self, []

    def unavailable(self, model: nn.Module) -> str:
        """Why this method cannot explain ``model`` (a sentence for the report), or ``""``
        when it can. The default: every model can be explained."""
        return ""

    def baseline_fill(self, channels: int) -> Tensor | None:
        """The plain (1, C, 1, 1) image this method treats as "absent" (pixels equal to it
        get zero attribution by construction), or ``None`` if it has none."""
        return None

    def with_changes(self: AttributionT, **changes: Any) -> AttributionT:
        """A shallow copy with attributes replaced (for :meth:`prepare`)."""
        out = copy.copy(self)
        for k, v in changes.items():
            setattr(out, k, v)
        return out

    def check_inputs(self, x: Tensor, target: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is (N, C, H, W) and ``target`` is (N,)."""
        if x.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
        if target.shape != (x.shape[0],):
            raise ValueError(f"target must be ({x.shape[0]},); got {tuple(target.shape)}")

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
        takes ``batch_size // cost`` images at a time; a deterministic gradient method at most
        :func:`~stresslab.devices.images_per_pass` ``// cost``, so memory does not grow with
        the image size). ``generator`` seeds stochastic
        methods; it is drawn from on the CPU so results do not depend on the device.
        The model leaves in the mode it came in with its parameter gradients untouched.
        """
        self.check_inputs(x, target)
        device = model_device(model)
        size = (x.shape[2], x.shape[3])
        per_chunk = max(1, batch_size // max(1, self.cost))
        if self.gradient_based and not self.stochastic:
            # A deterministic map does not depend on its chunk: cap it so one backward pass
            # holds at most GRADIENT_PIXELS input pixels (a stochastic method keeps its chunk,
            # which fixes its noise draws, and bounds its own passes).
            per_chunk = min(per_chunk, max(1, images_per_pass(*size) // max(1, self.cost)))
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

    def confidence_maps(
        self, model: nn.Module, x: Tensor, targets: Tensor, *, batch_size: int = 1024
    ) -> OcclusionMaps:
        """For methods with ``has_confidence_map``: attribution and confidence maps of
        images ``x`` (N, C, H, W) for ``targets`` (N, T) at once (see ``OcclusionMaps``)."""
        raise NotImplementedError(f"{self.label} has no confidence map")

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


ATTRIBUTIONS: Registry[type[Attribution]] = Registry(
    "attribution method", settings_of=lambda cls: cls.options
)
"""Attribution classes by name; ``ATTRIBUTIONS.build(name, **settings)`` makes one, a config
setting only the method's ``options`` (other constructor keywords are filled by ``prepare``)."""

AttributionClassT = TypeVar("AttributionClassT", bound=type[Attribution])


def register_attribution(name: str) -> Callable[[AttributionClassT], AttributionClassT]:
    """Class decorator: register an attribution class in ``ATTRIBUTIONS`` as ``name`` and set
    ``cls.name``. Each method registers itself in its own file."""

    def deco(cls: AttributionClassT) -> AttributionClassT:
        cls.name = name
        ATTRIBUTIONS.register(name)(cls)
        return cls

    return deco
