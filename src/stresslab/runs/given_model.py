"""A model handed over in memory (:func:`stresslab.probe`): checked, normalized, explainable.

Every stresslab part passes images in [0, 1]. A model that expects normalized input gets
a :class:`~stresslab.models.base.Normalize` layer in front (``normalize=(mean, std)``). A
plain ``nn.Module`` (or any callable) is wrapped as a
:class:`~stresslab.models.external.UserModel`, which gives it ``features()`` and
``cam_layer`` (its last ``nn.Conv2d``); Grad-CAM settings naming a layer of the user's own
module are resolved inside the wrapper, and an error names the candidate layers where there
is no conv layer to explain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier, Normalize
from stresslab.models.external import UserModel
from stresslab.models.layers import record_layers
from stresslab.probes.base import Probe
from stresslab.scoped import inference_scope

__all__ = [
    "CallableModel",
    "as_module",
    "check_cam_layers",
    "normalize_layer",
    "output_classes",
    "spatial_layers",
    "wrap",
]


class CallableModel(nn.Module):
    """A plain function ``fn(images) -> logits`` as a module (it has no parameters)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fn(x)
        return out


def as_module(model: Any) -> nn.Module:
    """``model`` as an ``nn.Module``; ConfigError naming ``model`` when it cannot be called."""
    if isinstance(model, nn.Module):
        return model
    if not callable(model):
        raise ConfigError(
            "model: expected a torch.nn.Module (or a callable mapping images (N, C, H, W) to logits "
            f"(N, K)), got {type(model).__name__} {model!r:.60}"
        )
    return CallableModel(model)


def normalize_layer(normalize: Any, channels: int) -> Normalize | None:
    """``(mean, std)`` (each a number or one value per channel) as a Normalize layer."""
    if normalize is None:
        return None
    try:
        mean_raw, std_raw = normalize
        values = {
            "mean": torch.as_tensor(mean_raw, dtype=torch.float64).flatten().tolist(),
            "std": torch.as_tensor(std_raw, dtype=torch.float64).flatten().tolist(),
        }
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(
            f"normalize: expected (mean, std), each a number or one number per channel, got {normalize!r}"
        ) from None
    for label, vals in values.items():
        if len(vals) == 1:
            values[label] = vals = vals * channels
        if len(vals) != channels:
            raise ConfigError(f"normalize: {label} has {len(vals)} values for {channels}-channel images")
        if not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"normalize: {label} holds a value that is not finite: {vals}")
    if min(values["std"]) <= 0:
        raise ConfigError(f"normalize: std must be > 0, got {values['std']}")
    return Normalize(values["mean"], values["std"])


def output_classes(module: nn.Module, norm: Normalize | None, x: Tensor) -> int:
    """The number of logits K the model gives for a few images ``x`` in [0, 1] (on its device)."""
    shape = tuple(x.shape)
    with inference_scope(module), torch.no_grad():
        try:
            out = module(norm(x) if norm is not None else x)
        except Exception as exc:
            how = "normalized by normalize=" if norm is not None else "in [0, 1]"
            raise ConfigError(
                f"model: the forward pass on test images of shape {shape} (float32, {how}) failed: {exc!r}"
            ) from exc
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != shape[0] or out.shape[1] < 2:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model: expected logits of shape ({shape[0]}, K) with K >= 2 classes, got {got}")
    return int(out.shape[1])


def wrap(module: nn.Module, info: DatasetInfo, norm: Normalize | None) -> nn.Module:
    """The model the probes see: a Classifier as it is (it normalizes itself), else a
    :class:`UserModel` with ``norm`` in front (identity without one)."""
    if isinstance(module, Classifier) and norm is None:
        return module
    wrapped = UserModel(module, info, normalize=False)
    if norm is not None:
        wrapped.normalize = norm
    wrapped.check(info, "model")
    return wrapped


def spatial_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the layers whose output is (N, C, H, W) with H * W > 1, in the order they run."""
    events = record_layers(model, x, lambda name, m: name != "normalize" and not isinstance(m, Normalize))
    return list(dict.fromkeys(e.name for e in events if e.is_spatial_map))


def _candidates(model: nn.Module, x: Tensor, prefix: str, method: str) -> str:
    names = [n[len(prefix) :] if n.startswith(prefix) else n for n in spatial_layers(model, x)]
    if not names:
        return f"no layer gives a spatial (N, C, H, W) output, so leave {method} out of probes['explain']"
    shown = ", ".join(names[-12:])
    return (
        f"layers with a spatial (N, C, H, W) output, in the order they run: {shown}; name one as "
        f"probes={{'explain': {{'methods': {{'{method}': {{'layer': '{names[-1]}'}}}}}}}}"
    )


def check_cam_layers(probes: Mapping[str, Probe], model: nn.Module, x: Tensor) -> None:
    """Resolve the layers the explain probe's CAM methods explain, before the run starts.

    A layer named as in the user's own module (``conv3``) is found inside the wrapper
    (``body.conv3``). Raises ConfigError naming the candidate layers when a named layer does
    not exist, or when none is named and the model has no ``nn.Conv2d``.
    """
    methods = getattr(probes.get("explain"), "methods", None)
    if not isinstance(methods, dict):
        return
    modules = dict(model.named_modules())
    prefix = "body." if isinstance(model, UserModel) else ""
    has_conv = bool(getattr(model, "cam_layer", "")) or any(
        isinstance(m, nn.Conv2d) for m in modules.values()
    )
    for name, method in list(methods.items()):
        if not getattr(method, "needs_conv_layer", False):
            continue
        layer = getattr(method, "layer", None)
        if layer and layer not in modules:
            if prefix + layer in modules:
                methods[name] = method.with_changes(layer=prefix + layer)
                continue
            raise ConfigError(
                f"probes.explain.methods.{name}.layer: the model has no layer {layer!r}; "
                + _candidates(model, x, prefix, name)
            )
        if not layer and not has_conv:
            raise ConfigError(
                f"model: {method.label} explains a conv layer and the model has no nn.Conv2d; "
                + _candidates(model, x, prefix, name)
            )
