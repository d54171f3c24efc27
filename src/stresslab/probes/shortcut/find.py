"""The box that carries a class's evidence, from its mean attribution map, refined by
occlusion where the map is coarse."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.devices import model_device
from stresslab.models.base import get_layer
from stresslab.probes.shortcut.regions import Box, box_share, normalized, top_region


@dataclass(frozen=True)
class Found:
    """A class's region: ``box``, the mean normalized map it was read from (H, W), each
    image's share of its own map inside the box (n,), whether occlusion refined it, and the
    number of images the map averages."""

    box: Box
    mean_map: Tensor
    per_image: Tensor
    refined: bool
    n_images: int

    @property
    def share(self) -> float:
        """Share of the mean map inside the box, in [0, 1]."""
        return float(box_share(self.mean_map[None], self.box)[0])

    @property
    def consistency(self) -> float:
        """Share of images whose own map puts at least twice the box's area share in it."""
        h, w = self.mean_map.shape
        return float((self.per_image >= 2 * self.box.area / (h * w)).float().mean())


def layer_resolution(model: nn.Module, layer: str, image: Tensor) -> tuple[int, int]:
    """Spatial size (h, w) of ``layer``'s output for one image (C, H, W) in [0, 1]; the
    hook is removed and the model's mode restored."""
    store: dict[str, tuple[int, int]] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        store["size"] = (int(output.shape[-2]), int(output.shape[-1]))

    handle = get_layer(model, layer).register_forward_hook(hook)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image[None].to(model_device(model), torch.float32))
    finally:
        handle.remove()
        model.train(was_training)
    return store.get("size", (int(image.shape[-2]), int(image.shape[-1])))


def class_region(maps: Tensor, top_fraction: float, max_fraction: float, min_images: int) -> Found | None:
    """The region of one class from its images' attribution maps (n, H, W) (the positive
    part of each, scaled to sum 1; see :func:`top_region`); ``None`` with fewer than
    ``min_images`` maps that have any positive mass."""
    shares, _ = normalized(maps)
    if len(shares) < min_images:
        return None
    mean_map = shares.mean(dim=0)
    box = top_region(mean_map, top_fraction, max_fraction)
    return Found(box, mean_map, box_share(shares, box), False, len(shares))


def refine(
    coarse: Found,
    occlusion: Attribution,
    model: nn.Module,
    x: Tensor,
    target: int,
    *,
    top_fraction: float,
    max_fraction: float,
    batch_size: int,
) -> Found:
    """Refine a coarse region (e.g. Grad-CAM's, whose resolution is that of its layer: 7x7
    cells of 4x4 pixels on a 28x28 image) with occlusion maps of images ``x`` (n, C, H, W)
    for class ``target``: the top region of their mean positive drop within the coarse box
    grown by its own height and width on every side. Returns ``coarse`` when occlusion finds
    no positive drop there. ``occlusion`` is a method with a confidence map (occlusion)."""
    occ = occlusion.confidence_maps(model, x, torch.full((len(x), 1), target), batch_size=batch_size).drop[
        :, 0
    ]
    shares, _ = normalized(occ)
    if len(shares) == 0:
        return coarse
    mean_map = shares.mean(dim=0)
    b = coarse.box
    near = torch.zeros_like(mean_map, dtype=torch.bool)
    near[max(0, b.top - b.height) : b.top + 2 * b.height, max(0, b.left - b.width) : b.left + 2 * b.width] = (
        True
    )
    local = torch.where(near, mean_map, torch.zeros_like(mean_map))
    if not bool((local > 0).any()):
        return coarse
    box = top_region(local, top_fraction, max_fraction)
    return Found(box, mean_map, box_share(shares, box), True, len(shares))
