"""A timm or torchvision model wrapped in stresslab's :class:`Classifier` contract."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.models.base import Classifier
from stresslab.models.spatial import CamSearch

log = logging.getLogger(__name__)


class HubModel(Classifier):
    """Normalize -> the library's model (``body``), with the Classifier interface.

    ``head`` is the library model's final classifier layer (already replaced for K
    classes), a submodule of ``body`` kept out of this module's own children so the state
    dict holds each weight once (under ``body.``). ``features()`` is the input of that
    layer: for timm ``forward_head(forward_features(x), pre_logits=True)`` (the pooled
    embedding), for torchvision the input of its last Linear, flattened, captured by a hook
    during a full forward (the pooled features for ResNets; for VGG, AlexNet and
    MobileNetV3 the output of the classifier's hidden layers). ``cam_layer`` was found
    by :func:`~stresslab.models.spatial.find_cam_layer`; reading it raises a
    :class:`~stresslab.errors.ConfigError` naming the candidates when none was found, and
    setting it (a dotted name under ``body.``) picks one by hand.
    """

    def __init__(
        self, raw: nn.Module, info: DatasetInfo, *, name: str, head: str, timm_api: bool, cam: CamSearch
    ) -> None:
        super().__init__(info.mean, info.std)
        self.body = raw
        del self._modules["head"]
        self.hub_name = name
        self._head_name = head
        self._timm_api = timm_api
        self._cam = cam

    @property
    def head(self) -> nn.Module:  # type: ignore[override]
        """The layer mapping ``features()`` (N, D) to logits (N, K)."""
        return self.body.get_submodule(self._head_name)

    @property  # type: ignore[override]
    def cam_layer(self) -> str:
        """Dotted name of the Grad-CAM layer (see the class docstring)."""
        return self._cam.require(f"model {self.hub_name!r}")

    @cam_layer.setter
    def cam_layer(self, name: str) -> None:
        self._cam = CamSearch(layer=name, candidates=self._cam.candidates)

    def disable_features(self, why: str) -> None:
        """Probes that need embeddings skip this model (``features`` becomes ``None``)."""
        log.warning("model %s: embeddings disabled because %s", self.hub_name, why)
        self.features = None  # type: ignore[assignment,method-assign]

    def features(self, x: Tensor) -> Tensor:
        """Embedding (N, D) of images (N, C, H, W) in [0, 1] (see the class docstring)."""
        z = self.normalize(x)
        if self._timm_api:
            pooled = self.body.forward_head(self.body.forward_features(z), pre_logits=True)  # type: ignore[operator]
            return torch.flatten(pooled, 1)
        captured: list[Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
        try:
            self.body(z)
        finally:
            handle.remove()
        return torch.flatten(captured[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, K) for images (N, C, H, W) in [0, 1]."""
        out: Tensor = self.body(self.normalize(x))
        return out
