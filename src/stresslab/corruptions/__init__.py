"""The 15 common corruptions of CIFAR-10-C, batched in torch, seeded, on any device.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Each corruption is ``fn(x, severity, generator)``: ``x`` float
images (N, C, H, W) in [0, 1] with C = 1 or 3, ``severity`` 1..5, every random draw from
``generator``; the result keeps shape, dtype and device and lies in [0, 1]. Parameters are
the CIFAR-10 ones of the authors' ``make_cifar_c.py`` (tables in ``noise``, ``blur``,
``weather``, ``digital``).

Every adaptation of the original code (details in each module's docstring):

- all corruptions run on whole batches with torch ops on the images' device (banded-matrix
  products for Gaussian filters, a depthwise convolution for the defocus disk, one sparse
  matrix for all the zooms of zoom blur, box-filter matrices for pixelate, ``grid_sample``
  for the elastic warp, gathers for pixel jitter and motion blur); only JPEG loops over
  images, inside torchvision's codec.
- glass blur: the sequential pixel-swap loop becomes one random-neighbour gather per
  iteration, with the original's offsets ([-max_delta, max_delta - 1]^2) and rows/columns.
- motion blur and the snow layer's blur: ImageMagick's motion blur (Wand) becomes the same
  one-sided Gaussian line kernel in torch.
- frost: the frost photographs are not shipped; a procedural frost layer matched to
  their brightness, contrast and tint replaces them.
- zoom blur, snow: the crop-zoom-trim of ``clipped_zoom`` is one bilinear resampling
  about the centre.
- elastic transform: affine warp and displacement field compose into one resampling.
- brightness: the HSV round trip is replaced by its closed form (scale RGB by V' / V).
- pixelate: PIL's BOX resizes as exact box-filter matrices, without 8-bit rounding.
- JPEG: torchvision's libjpeg codec instead of PIL's, same qualities.
- images of another size: lengths defined as fractions of the 32 px CIFAR side
  (elastic transform, as there) and the motion-blur lengths (motion blur, snow) scale with
  the shorter side / 32; per-pixel kernels (defocus, glass, noise) and relative factors
  (zoom, pixelate, contrast) stay as they are, since they act at the scale of one pixel or
  of the whole image; the fog fractal is drawn at 32 px (or larger) and cropped.
- grayscale images: noise, blurs, contrast, elastic, pixelate and JPEG act on the one
  channel; snow uses the image as its own luma; frost adds the frost layer's luminance;
  brightness reduces to x + c (the HSV value of a gray pixel is the pixel).

Adding a corruption is one function with the :func:`register_corruption` decorator, in
one file::

    import torch
    from torch import Tensor

    from stresslab.corruptions import register_corruption

    @register_corruption("invert")
    def invert(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        # Blend towards the negative image, more with severity.
        return x + severity / 5 * (1 - 2 * x)

The decorator checks the input (float (N, C, H, W), C = 1 or 3, severity 1..5), hands the
function a float32 batch, clamps its output to [0, 1] and casts it back to the input's
dtype, and registers it in :data:`CORRUPTIONS`: the ``corruption`` probe runs every
registered name by default, and ``stresslab list`` shows it. A built-in corruption goes in
the module of its family (``noise``, ``blur``, ``weather``, ``digital``) and is listed in
the paper's order by the imports below; a file of one's own only has to be imported before
the probe is built (e.g. ahead of calling the Python API).
"""

# Import order is registration order, which is the paper's order of the 15 corruptions.
# isort: off
from stresslab.corruptions import noise, blur, weather, digital

# isort: on
from stresslab.corruptions.base import CORRUPTIONS, SEVERITIES, CorruptionFn, corrupt, register_corruption

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "CorruptionFn",
    "blur",
    "corrupt",
    "digital",
    "noise",
    "register_corruption",
    "weather",
]
