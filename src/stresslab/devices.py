"""The one device picker: what ``device: auto`` means, where a model already lives, and how
many images go through one pass."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from stresslab.errors import ConfigError

GRADIENT_PIXELS = 256 * 28 * 28
"""Input pixels (images x height x width) differentiated in one backward pass. Autograd keeps
every activation of a pass until its backward, so memory grows with the pixels, not the
images: 256 Fashion-MNIST images per pass as before, 21 at 96 px (where ``fast_cnn`` held
about 20 MB per image, and 240 SmoothGrad copies at once took the explain probe past 6 GB)."""

FORWARD_PIXELS = 4 * GRADIENT_PIXELS
"""Input pixels per forward-only pass (no activations kept): 1,024 images at 28 px, 87 at 96 px."""

ATTACK_PIXELS = GRADIENT_PIXELS
"""Input pixels attacked in one batch (each attack step a forward and a backward pass, so
the same budget as :data:`GRADIENT_PIXELS`): 256 Fashion-MNIST images, 21 at 96 px. The
whole-test-set attack in the run's batches of 1,024 took a 100,000-image run at 96 px past
10 GB, and in batches of 87 (four times this budget) to 4.4 GB."""


def images_within(per_image: int, budget: int) -> int:
    """How many images of ``per_image`` values (pixels, or values over all channels) fit in
    ``budget`` values; at least one."""
    return max(1, budget // max(1, per_image))


def images_per_pass(height: int, width: int, pixels: int | None = None) -> int:
    """Images of ``height`` x ``width`` pixels that fit ``pixels`` input pixels per pass (>= 1);
    ``None``: :data:`GRADIENT_PIXELS`."""
    return images_within(height * width, GRADIENT_PIXELS if pixels is None else pixels)


def forward_batch(batch_size: int, height: int, width: int) -> int:
    """``batch_size`` images per forward-only pass, at most :data:`FORWARD_PIXELS` input
    pixels (1,024 images at 28 px, 87 at 96 px): the activations of one pass of ``fast_cnn``
    over 1,024 RGB images of 96 px take about 1.2 GB; >= 1."""
    return max(1, min(batch_size, images_per_pass(height, width, FORWARD_PIXELS)))


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
