"""The one device picker: what ``device: auto`` means, and where a model already lives."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from stresslab.errors import ConfigError


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has neither)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def pick_device(name: str | torch.device | None = "auto", model: nn.Module | None = None) -> torch.device:
    """The device to run on.

    ``"auto"``: CUDA when available, else CPU. ``None``: where ``model``'s parameters are
    (CPU without a model or parameters). Anything else is parsed by torch. Raises
    ConfigError for a name torch does not know, or CUDA asked for where there is none.
    """
    if name is None:
        return model_device(model) if model is not None else torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {name!r} is not a device torch knows ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r}, but CUDA is not available here")
    return dev
