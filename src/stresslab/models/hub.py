"""Models by name from timm and torchvision: ``model.name: timm:<name>`` or ``torchvision:<name>``.

The library's own factory builds the model with ``pretrained=False`` / ``weights=None``:
nothing is downloaded, ever. Weights come from a local file (``model.weights``: a ``.pt``
state dict, loaded with ``weights_only=True``, or ``.safetensors``) and load into the model
as the library defines it (3 input channels, its own head). Then the input convolution is
adapted to the data's channels, the classifier layer is replaced for the data's classes and
the result is wrapped as a :class:`~stresslab.models.hub_model.HubModel`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import CheckpointError, ConfigError
from stresslab.models.base import check_outputs
from stresslab.models.hub_model import HubModel
from stresslab.models.layers import record_layers
from stresslab.models.spatial import find_cam_layer

log = logging.getLogger(__name__)

LIBRARIES = ("timm", "torchvision")
EXTRAS = {"timm": "timm"}  # library -> the stresslab extra that installs it (torchvision is core)
LIBRARY_CHANNELS = 3  # both libraries build RGB models
# Factory arguments stresslab sets itself: from the data, or never (downloads).
_FROM_DATA = ("num_classes", "in_chans", "in_channels")
_DOWNLOADS = (
    "pretrained",
    "weights",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "weights_backbone",
    "cache_dir",
)
_TORCHVISION_HEADS = ("fc", "classifier", "heads", "head")


def split_hub_name(name: str) -> tuple[str, str] | None:
    """``"timm:resnet18"`` -> ``("timm", "resnet18")``; ``None`` for a name without such a prefix."""
    library, sep, arch = name.partition(":")
    return (library, arch) if sep and library in LIBRARIES else None


def is_hub_name(name: str) -> bool:
    """Whether ``name`` asks for a timm or torchvision model (``timm:...``, ``torchvision:...``)."""
    return split_hub_name(name) is not None


def _library(library: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(library)
    except ImportError:
        extra = EXTRAS.get(library, library)
        raise ConfigError(
            f"model.name {name!r} needs {library}, which is not installed: pip install 'stresslab[{extra}]'"
        ) from None


def hub_names(library: str) -> list[str]:
    """Every classification model name the installed ``library`` can build."""
    if library == "timm":
        return list(_library("timm", "timm:").list_models())
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def check_hub_name(name: str) -> None:
    """Raise :class:`ConfigError` unless the library is installed and knows the model;
    the error names the extra to install or the closest names."""
    parsed = split_hub_name(name)
    if parsed is None or not parsed[1]:
        raise ConfigError(f"model.name {name!r}: expected 'timm:<model>' or 'torchvision:<model>'")
    library, arch = parsed
    _library(library, name)
    known = hub_names(library)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ConfigError(f"model.name {name!r}: {library} has no classification model {arch!r}{hint}")


def _factory_args(name: str, library: str, arch: str, args: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(args)
    for key in _DOWNLOADS:
        if key in kwargs and not kwargs[key]:
            del kwargs[key]  # `pretrained: false` / `weights: null` ask for what happens anyway
        elif key in kwargs:
            raise ConfigError(
                f"model.args.{key}={kwargs[key]!r} for {name!r}: stresslab never downloads weights; "
                "save them once to a file and set model.weights: path/to/file (.pt state dict or "
                ".safetensors)"
            )
    for key in _FROM_DATA:
        if key in kwargs:
            raise ConfigError(
                f"model.args.{key} for {name!r}: set from the data (its channels and classes); leave it out"
            )
    if library == "torchvision" and arch in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)  # one logits tensor in training too
    return kwargs


def _build_library_model(name: str, library: str, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        if library == "timm":
            model: nn.Module = _library("timm", name).create_model(arch, pretrained=False, **kwargs)
        else:
            import torchvision

            model = torchvision.models.get_model(arch, weights=None, **kwargs)
    except Exception as exc:
        raise ConfigError(f"model {name!r} could not be built from args {kwargs}: {exc!r}") from exc
    return model


def _head_name(library: str, model: nn.Module, name: str) -> str:
    """Dotted name of the classifier module: timm's ``get_classifier()`` (a layer), else
    torchvision's ``fc`` / ``classifier`` / ``heads`` / ``head`` child (a layer or a block
    ending in one)."""
    if library == "timm":
        found = model.get_classifier()  # type: ignore[operator]
        for n, m in model.named_modules():
            if m is found and n:
                return n
    else:
        for attr in _TORCHVISION_HEADS:
            if isinstance(getattr(model, attr, None), nn.Module):
                return attr
    children = ", ".join(n for n, _ in model.named_children())
    raise ConfigError(f"model {name!r}: no classifier module found among its children ({children})")


def _load_file(model: nn.Module, path: str, head: str) -> dict[str, Tensor]:
    """Load ``path`` into ``model``, strictly except for the classifier ``head``, which is
    replaced afterwards: its weights may be absent or shaped for another class count. Returns
    the file's own weights under ``head`` (for :func:`_keep_file_head`)."""
    from stresslab.models.weights import load_checkpoint, load_weights

    if not Path(path).is_file():
        raise ConfigError(f"model.weights: file not found: {path}")
    state = dict(load_checkpoint(path)["state_dict"])
    file_head = {k: v for k, v in state.items() if k == head or k.startswith(head + ".")}
    own = model.state_dict()
    for key, value in own.items():
        in_head = key == head or key.startswith(head + ".")
        if in_head and (key not in state or tuple(state[key].shape) != tuple(value.shape)):
            state[key] = value
    try:
        load_weights(model, state, path)
    except CheckpointError as exc:
        if any(k.startswith("body.") for k in state):
            raise CheckpointError(
                f"{exc}\n  (this looks like a stresslab checkpoint: pass it with --checkpoint instead)"
            ) from None
        raise
    log.info("loaded weights from %s", path)
    return file_head


def _keep_file_head(model: nn.Module, head: str, file_head: dict[str, Tensor], path: str) -> bool:
    """Load the weights file's classifier into the new ``head`` when it has exactly the new
    head's weights and shapes (a model trained for these K classes); whether it did."""
    own = {k: v for k, v in model.state_dict().items() if k == head or k.startswith(head + ".")}
    if not own or set(own) != set(file_head):
        return False
    if any(tuple(own[k].shape) != tuple(file_head[k].shape) for k in own):
        return False
    model.load_state_dict(file_head, strict=False)
    log.info(
        "kept the classifier of %s: it has the data's %d classes", path, next(iter(own.values())).shape[0]
    )
    return True


def _input_convs(model: nn.Module, x: Tensor) -> list[nn.Conv2d]:
    """The Conv2d layers that read the input image ``x`` itself (the first one called when no
    layer receives ``x`` unchanged)."""
    called = [
        (e.module, e.reads_input)
        for e in record_layers(model, x, lambda _, m: isinstance(m, nn.Conv2d))
        if e.kind == "call" and isinstance(e.module, nn.Conv2d)
    ]
    direct = list(dict.fromkeys(m for m, is_input in called if is_input))
    return direct or [m for m, _ in called[:1]]


@torch.no_grad()
def adapt_input_conv(conv: nn.Conv2d, channels: int) -> None:
    """Make ``conv`` read ``channels`` input channels instead of ``conv.in_channels``, in place.

    One channel: the weights are summed over the input channels, so a gray image ``g`` gives
    exactly what the original layer gives on ``g`` repeated in every channel (pretrained RGB
    filters applied to a gray image). Otherwise the weights are repeated cyclically over the
    new channels and scaled by ``in_channels / channels`` (as timm's ``adapt_input_conv``).
    """
    if conv.groups != 1:
        raise ConfigError(f"cannot adapt a grouped input convolution ({conv}) to {channels} channels")
    w = conv.weight
    if channels == 1:
        new = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-channels // w.shape[1])
        new = w.repeat(1, reps, 1, 1)[:, :channels] * (w.shape[1] / channels)
    conv.weight = nn.Parameter(new.contiguous(), requires_grad=w.requires_grad)
    conv.in_channels = channels


def _replace_head(library: str, model: nn.Module, head: str, classes: int) -> str:
    """Replace the last Linear (SqueezeNet: 1x1 Conv2d) of the classifier ``head`` by a new one
    with ``classes`` outputs; return the new layer's dotted name."""
    if library == "timm":
        model.reset_classifier(classes)  # type: ignore[operator]
        return _head_name(library, model, head)
    container = model.get_submodule(head)
    layers = [(n, m) for n, m in container.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ConfigError(f"the classifier {head!r} has no Linear or Conv2d layer to replace")
    sub, old = layers[-1]
    new: nn.Module
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, classes, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d) and old.kernel_size == (1, 1):  # SqueezeNet's classifier
        new = nn.Conv2d(old.in_channels, classes, kernel_size=1)
    else:
        raise ConfigError(f"the classifier {head!r} ends in {old}, which stresslab cannot replace")
    path = f"{head}.{sub}" if sub else head
    parent_name, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)
    return path


def _forward_failed(info: DatasetInfo, exc: Exception) -> str:
    return (
        f"forward on {info.height}x{info.width} images failed: {exc!r}. The images may be too small "
        "for its downsampling (set data.image_size), or it needs its input size in model.args "
        "(e.g. img_size for timm, image_size for torchvision's vision transformers)"
    )


def build_hub_model(
    name: str, info: DatasetInfo, args: dict[str, Any] | None = None, weights: str | Path | None = None
) -> HubModel:
    """A timm or torchvision model for images shaped like ``info`` (C x H x W, K classes).

    ``name`` is ``timm:<model>`` or ``torchvision:<model>`` (any name the library's factory
    knows), ``args`` go to that factory (``num_classes`` and ``in_chans`` come from the data;
    ``pretrained`` / ``weights`` are refused: nothing is downloaded) and ``weights`` is a
    local file for the library's model as it defines it (see :func:`_load_file`). The first
    convolution is adapted to C channels (:func:`adapt_input_conv`) and the classifier layer
    replaced by a freshly initialised one with K outputs (the file's own classifier where it
    has exactly K outputs: a model trained for these classes, probed as it is). Raises
    :class:`ConfigError` (the library missing: the error names the extra; an unknown name:
    the closest ones; a model that fails on C x H x W images) or :class:`CheckpointError`
    (the weights file).
    """
    check_hub_name(name)
    library, arch = split_hub_name(name) or ("", "")
    model = _build_library_model(name, library, arch, _factory_args(name, library, arch, args or {}))
    head = _head_name(library, model, name)
    file_head = _load_file(model, str(weights), head) if weights else {}
    gen = torch.Generator().manual_seed(0)
    if info.channels != LIBRARY_CHANNELS:
        probe = torch.rand(1, LIBRARY_CHANNELS, info.height, info.width, generator=gen)
        try:
            convs = _input_convs(model, probe)
        except Exception as exc:
            raise ConfigError(f"model {name!r}: {_forward_failed(info, exc)}") from exc
        for conv in convs:
            adapt_input_conv(conv, info.channels)
    final = _replace_head(library, model, head, info.num_classes)
    if file_head:
        _keep_file_head(model, head, file_head, str(weights))
    x = torch.rand(2, info.channels, info.height, info.width, generator=gen)
    nhwc = str(getattr(model, "output_fmt", "")).upper().endswith("NHWC")
    try:
        cam = find_cam_layer(model, x, head=head, prefix="body.", channels_last_output=nhwc)
    except Exception as exc:
        raise ConfigError(f"model {name!r}: {_forward_failed(info, exc)}") from exc
    if cam.layer and cam.size == (1, 1):
        log.warning(
            "model %s: its last feature map (%s) is 1x1 on %dx%d images, so Grad-CAM maps are uniform; "
            "larger images (data.image_size) or a model for small images localize",
            name,
            cam.layer,
            info.height,
            info.width,
        )
    hub = HubModel(model, info, name=name, head=final, timm_api=library == "timm", cam=cam)
    if not check_outputs(hub, info, f"model {name!r}"):
        hub.disable_features("head(features(x)) does not reproduce its forward output")
    return hub
