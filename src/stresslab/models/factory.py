"""The model registry, ``build_model`` (registered, from timm / torchvision, or user-supplied)
and ``model_summary``.

Every registered factory has the signature ``(info: DatasetInfo, *, **args) -> Classifier``;
its keyword arguments are the model's config settings (``model.args`` in a study config).
Names ``timm:<model>`` and ``torchvision:<model>`` build any model those libraries know
(see :mod:`stresslab.models.hub`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.registry import Registry
from stresslab.scoped import inference_scope

ModelFactory = Callable[..., Classifier]

MODELS: Registry[ModelFactory] = Registry("model")


def model_args(name: str) -> dict[str, Any]:
    """The config settings of registered model ``name`` with their defaults (``inspect.Parameter.empty``
    marks a required one)."""
    return MODELS.settings(name, bound=1)


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register a model factory ``(info: DatasetInfo, *, **settings) -> Classifier``
    in :data:`MODELS` as ``name`` and return it unchanged; its keyword arguments are the
    model's config settings (``model.args``), checked by :meth:`Registry.build`."""
    return MODELS.register(name)


def check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is registered, or a ``timm:`` /
    ``torchvision:`` name whose library is installed and knows it."""
    from stresslab.models.hub import check_hub_name, is_hub_name

    if is_hub_name(name):
        check_hub_name(name)
    else:
        MODELS.get(name, where="model.name")


def build_model(
    name: str,
    info: DatasetInfo,
    args: dict[str, Any] | None = None,
    source: str | None = None,
    weights: str | Path | None = None,
) -> Classifier:
    """Build a classifier for images shaped like ``info`` (C x H x W, K = ``info.num_classes``).

    ``name`` is a registered model (``MODELS.names()``) and ``args`` its keyword settings; an
    unknown setting raises :class:`ConfigError` listing the accepted ones. ``timm:<model>`` or
    ``torchvision:<model>`` builds that library's model (``args`` go to its factory) with the
    local ``weights`` file, if given (see :func:`stresslab.models.hub.build_hub_model`). When
    ``source`` is given (``path/to/file.py:ClassName`` or ``package.module:ClassName``) the
    user's own class is built with ``args`` instead (see
    :func:`stresslab.models.external.load_user_model`) and ``name`` only labels it.
    """
    args = dict(args or {})
    from stresslab.models.hub import build_hub_model, is_hub_name

    if weights and (source or not is_hub_name(name)):
        raise ConfigError(
            "model.weights is for timm: and torchvision: models; load a stresslab or user model's "
            "weights with --checkpoint"
        )
    if source:
        from stresslab.models.external import load_user_model

        return load_user_model(source, info, args)
    if is_hub_name(name):
        return build_hub_model(name, info, args, weights)
    MODELS.get(name, where="model.name")
    model: Classifier = MODELS.build(name, info, where="model.args", **args)
    return model


def model_summary(model: nn.Module, info: DatasetInfo) -> dict[str, int | float]:
    """Parameter counts and forward cost per image of ``model`` on one (1, C, H, W) input.

    Returns ``params`` and ``trainable_params`` (counts), ``macs`` (multiply-accumulates of
    every Conv2d and Linear layer per image, biases, norms and activations not counted) and
    ``gflops`` (= 2 * macs / 1e9, one MAC counted as two FLOPs). The model is run once on a
    zero image in eval mode; its mode, parameters and gradients are left as they were.
    """
    macs = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal macs
        per_image = output.numel() // max(1, output.shape[0])
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += per_image * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += per_image * module.in_features

    handles = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    try:
        with inference_scope(model), torch.no_grad():
            model(torch.zeros(1, info.channels, info.height, info.width, device=device))
    finally:
        for h in handles:
            h.remove()
    return {
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "macs": macs,
        "gflops": 2.0 * macs / 1e9,
    }
