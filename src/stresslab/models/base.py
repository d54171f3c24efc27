"""The model contract: a classifier takes images in [0, 1] and normalizes inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

if TYPE_CHECKING:
    from stresslab.data.base import DatasetInfo


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a layer, so every caller passes [0, 1] images."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Normalize -> ``body`` (features, shape (N, D)) -> ``head`` (logits, shape (N, K)).

    Subclasses build ``body`` and ``head`` and set ``cam_layer``, the dotted name of the
    module whose activations Grad-CAM explains by default (the last spatial block).
    """

    cam_layer: str = ""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()

    def features(self, x: Tensor) -> Tensor:
        """Embedding before the classifier head: (N, C, H, W) in [0, 1] -> (N, D)."""
        return torch.flatten(self.body(self.normalize(x)), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, K) for images (N, C, H, W) in [0, 1]."""
        return self.head(self.features(x))


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``; the error lists the layers that exist."""
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise ConfigError(f"model has no layer {name!r}; conv layers are: {', '.join(convs)}")
    return modules[name]


def default_cam_layer(model: nn.Module) -> str:
    """``model.cam_layer`` if set, else the name of the last Conv2d in the model."""
    name = getattr(model, "cam_layer", "")
    if name:
        return str(name)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError("model has no Conv2d layer; name one for Grad-CAM with `layer:`")
    return convs[-1]


def check_outputs(model: nn.Module, info: DatasetInfo, label: str) -> bool:
    """Run two random images (2, C, H, W) in [0, 1] through ``model`` in eval mode.

    Raises :class:`ConfigError` starting with ``label`` when the forward fails or its logits
    are not (2, K), K = ``info.num_classes``. Returns whether ``head(features(x))``
    reproduces the logits (atol 1e-4, rtol 1e-3); ``True`` when ``model.features`` is
    ``None`` (nothing to check). Mode, parameters and gradients are left as they were.
    """
    gen = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    x = torch.rand(2, info.channels, info.height, info.width, generator=gen).to(device)
    with inference_scope(model), torch.no_grad():
        try:
            logits = model(x)
        except Exception as exc:
            raise ConfigError(f"{label}: forward on a {tuple(x.shape)} batch failed: {exc!r}") from exc
        if not isinstance(logits, Tensor) or logits.shape != (2, info.num_classes):
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ConfigError(f"{label}: expected logits of shape (N, {info.num_classes}), got {shape}")
        features = getattr(model, "features", None)
        if features is None:
            return True
        try:
            again = model.head(features(x))  # type: ignore[operator]
            return bool(again.shape == logits.shape and torch.allclose(again, logits, atol=1e-4, rtol=1e-3))
        except Exception:
            return False
