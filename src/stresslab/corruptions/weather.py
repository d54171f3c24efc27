"""Weather corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): snow, frost, fog, brightness.

Parameters are those of ``make_cifar_c.py``. Adaptations:

- snow: the flake layer's ImageMagick motion blur is the torch line kernel of
  ``_filters.motion_blur``, with radius and sigma scaled by image side / 32; the layer's
  zoom is one bilinear resampling about the centre. The 8-bit rounding of the layer
  (PIL, PNG) is kept. Grayscale images use themselves as the luma.
- frost: the frost photographs are not shipped, so the frost layer is procedural
  (``_textures.frost_texture``: bright base, fractal haze, ice needles), matched to the
  photographs' mean, contrast and tint at CIFAR scale. As there, a few sheets (five, at
  twice the image size) serve the batch and each image gets a random sheet and crop, so
  no resize is needed for small images; grayscale images get its luminance.
- fog: the plasma fractal is drawn at 32 x 32 (as there), or at the next power of two
  above a larger image's side, and cropped to the image; ``x.max()`` is taken per image.
- brightness: adding c to V in HSV and converting back equals scaling each RGB pixel by
  V' / V with V = max over channels and V' = min(V + c, 1) (hue and saturation fixed);
  that closed form replaces the colour-space round trip. On one channel it is x + c.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stresslab.corruptions import _random
from stresslab.corruptions._filters import motion_blur as line_blur
from stresslab.corruptions._filters import to_gray, zoom_center
from stresslab.corruptions._textures import frost_texture, next_power_of_two, plasma_fractal
from stresslab.corruptions.base import register_corruption

# (flake mean, flake std, zoom, threshold, blur radius, blur sigma, image weight); radius and
# sigma in pixels of a 32 px image.
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# (image weight, frost weight).
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
# (fog strength, plasma wibble decay).
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))
# Added to the HSV value channel.
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)


@register_corruption("snow")
def snow(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Falling snow: thresholded, zoomed, motion-blurred flakes over a whitened image."""
    loc, scale, zoom, threshold, radius, sigma, keep = SNOW[severity - 1]
    n, _, h, w = x.shape
    flakes = _random.normal((n, 1, h, w), loc, scale, generator, x.device)
    flakes = zoom_center(flakes, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    flakes = torch.floor(flakes.clamp(0, 1) * 255.0) / 255.0
    angles = _random.uniform((n,), -135.0, -45.0, generator, x.device)
    side = min(h, w) / 32.0
    flakes = torch.round(line_blur(flakes, radius * side, sigma * side, angles) * 255.0) / 255.0
    x = keep * x + (1 - keep) * torch.maximum(x, to_gray(x) * 1.5 + 0.5)
    return x + flakes + flakes.flip(-1, -2)


@register_corruption("frost")
def frost(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Frost on a window: a * x + b * frost layer, (a, b) from (1, 0.2) to (0.75, 0.45)."""
    keep, amount = FROST[severity - 1]
    n, c, h, w = x.shape
    return keep * x + amount * frost_texture(n, c, h, w, generator, x.device)


@register_corruption("fog")
def fog(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Fog: add c * plasma fractal, rescale by max / (max + c); c = 0.2 .. 1.5."""
    strength, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    size = next_power_of_two(max(h, w, 32))
    layer = plasma_fractal(n, size, decay, generator, x.device)[:, :h, :w].unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * layer) * peak / (peak + strength)


@register_corruption("brightness")
def brightness(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Raise the HSV value by c = 0.05 .. 0.3 (clipped at 1), keeping hue and saturation."""
    c = BRIGHTNESS[severity - 1]
    value = x.amax(dim=1, keepdim=True)
    raised = (value + c).clamp(max=1.0)
    ratio = raised / value.clamp_min(1e-12)
    # A black pixel has no hue: it becomes the gray level c, as in the HSV round trip.
    return torch.where(value > 0, x * ratio, raised.expand_as(x))
