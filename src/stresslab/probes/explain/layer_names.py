"""The layers the explain probe's CAM methods explain, resolved before a run starts.

A layer named as in the user's own module (``conv3``) is found inside the
:class:`~stresslab.models.external.UserModel` wrapper (``body.conv3``). A named layer the
model lacks, or a CAM method on a model with no ``nn.Conv2d``, is a :class:`ConfigError`
that names the layers with a spatial output the user could name instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.errors import ConfigError
from stresslab.models.base import Normalize
from stresslab.models.external import UserModel
from stresslab.models.layers import record_layers


def spatial_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the layers whose output is (N, C, H, W) with H * W > 1, in the order they run.

    One forward pass of ``x`` (N, C, H, W) in [0, 1] without gradients, in eval mode; the
    model's mode is restored and every hook removed afterwards.
    """
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


def _has_conv(model: nn.Module, modules: Mapping[str, nn.Module]) -> bool:
    """Whether ``model`` has a layer a CAM method explains by default (its ``cam_layer``,
    which may raise a ConfigError saying why it has none, else any ``nn.Conv2d``)."""
    if getattr(model, "cam_layer", ""):
        return True
    return any(isinstance(m, nn.Conv2d) for m in modules.values())


def resolve_cam_layers(
    methods: Mapping[str, Attribution], model: nn.Module, x: Tensor
) -> dict[str, Attribution]:
    """``methods`` with each CAM method's layer resolved in ``model`` (others unchanged).

    ``x`` is a few images (N, C, H, W) in [0, 1] on the model's device, used only to list
    candidate layers for an error. Raises ConfigError naming
    ``probes.explain.methods.<name>.layer`` when a named layer does not exist, or ``model``
    when none is named and the model has no ``nn.Conv2d`` (nor a ``cam_layer``).
    """
    modules = dict(model.named_modules())
    prefix = "body." if isinstance(model, UserModel) else ""
    out = dict(methods)
    for name, method in methods.items():
        if not getattr(method, "needs_conv_layer", False):
            continue
        layer = getattr(method, "layer", None)
        if layer and layer not in modules:
            if prefix + layer in modules:
                out[name] = method.with_changes(layer=prefix + layer)
                continue
            raise ConfigError(
                f"probes.explain.methods.{name}.layer: the model has no layer {layer!r}; "
                + _candidates(model, x, prefix, name)
            )
        if not layer and not _has_conv(model, modules):
            raise ConfigError(
                f"model: {method.label} explains a conv layer and the model has no nn.Conv2d; "
                + _candidates(model, x, prefix, name)
            )
    return out
