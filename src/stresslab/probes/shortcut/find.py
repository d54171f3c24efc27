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
from stresslab.shards import Advance


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


def maps_shard(
    model: nn.Module, data: dict[str, Tensor], advance: Advance, *, method: Attribution, batch_size: int
) -> Tensor:
    """Attribution maps (n, H, W) of the shard's images ``data["x"]`` (n, C, H, W) in [0, 1]
    for their classes ``data["y"]`` (n,) by ``method`` (a shard function; ``method`` is
    deterministic, so the maps do not depend on the split): the confidence drop of a method
    with confidence maps (occlusion), else its attribution."""
    x, y = data["x"], data["y"]
    if method.has_confidence_map:
        maps = method.confidence_maps(model, x, y[:, None], batch_size=max(batch_size, 256)).drop[:, 0]
    else:
        maps = method.attribute(model, x, y, batch_size=batch_size)
    advance(len(x))
    return maps


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


def _without(mean_map: Tensor, boxes: list[Box]) -> Tensor:
    """``mean_map`` (H, W) with each box of ``boxes``, grown by half its height and width on
    every side (an attribution map blurs a region over about its own size), set to 0."""
    out = mean_map.clone()
    for b in boxes:
        dh, dw = (b.height + 1) // 2, (b.width + 1) // 2
        out[max(0, b.top - dh) : b.top + b.height + dh, max(0, b.left - dw) : b.left + b.width + dw] = 0
    return out


def regions_of(
    shares: Tensor,
    top_fraction: float,
    max_fraction: float,
    n_regions: int,
    *,
    refined: bool = False,
    exclude: list[Box] | None = None,
) -> list[Found]:
    """Up to ``n_regions`` separate regions of normalized maps ``shares`` (n, H, W), n >= 1,
    strongest first: the top region of their mean (:func:`top_region`), then the top region
    of what is left once it and every box in ``exclude`` (each grown by half its size) are
    taken out, and so on while any positive mass is left. A class's evidence need not sit in
    one place: a planted pattern can carry less attribution than the object and still
    decide the prediction when pasted elsewhere, so the second and third regions are
    candidates too."""
    mean_map = shares.mean(dim=0)
    out: list[Found] = []
    for _ in range(n_regions):
        left = _without(mean_map, list(exclude or []) + [f.box for f in out])
        if not bool((left > 0).any()):
            break
        box = top_region(left, top_fraction, max_fraction)
        out.append(Found(box, mean_map, box_share(shares, box), refined, len(shares)))
    return out


def class_regions(
    maps: Tensor, top_fraction: float, max_fraction: float, min_images: int, n_regions: int = 1
) -> list[Found]:
    """The regions of one class from its images' attribution maps (n, H, W) (the positive
    part of each, scaled to sum 1; see :func:`regions_of`), strongest first; none with
    fewer than ``min_images`` maps that have any positive mass."""
    shares, _ = normalized(maps)
    if len(shares) < min_images:
        return []
    return regions_of(shares, top_fraction, max_fraction, n_regions)


def class_region(maps: Tensor, top_fraction: float, max_fraction: float, min_images: int) -> Found | None:
    """The strongest region of :func:`class_regions`, ``None`` when there is none."""
    found = class_regions(maps, top_fraction, max_fraction, min_images)
    return found[0] if found else None


def occlusion_shares(
    occlusion: Attribution, model: nn.Module, x: Tensor, target: int, batch_size: int
) -> Tensor:
    """Normalized occlusion maps (m, H, W) of images ``x`` (n, C, H, W) for class ``target``
    (the positive drop of its probability, each map scaled to sum 1; maps without any
    positive drop left out). ``occlusion`` is a method with a confidence map."""
    target_of = torch.full((len(x), 1), target)
    drop = occlusion.confidence_maps(model, x, target_of, batch_size=batch_size).drop[:, 0]
    return normalized(drop)[0]


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
    return search(
        coarse, occlusion, model, x, target, top_fraction=top_fraction, max_fraction=max_fraction,
        batch_size=batch_size, n_regions=1,
    )[0]  # fmt: skip


def search(
    coarse: Found,
    occlusion: Attribution,
    model: nn.Module,
    x: Tensor,
    target: int,
    *,
    top_fraction: float,
    max_fraction: float,
    batch_size: int,
    n_regions: int,
) -> list[Found]:
    """Up to ``n_regions`` regions from occlusion maps of images ``x`` (n, C, H, W) for
    class ``target``, strongest first: ``coarse`` refined (:func:`refine`), then the other
    regions of the same occlusion maps anywhere in the image (:func:`regions_of`). A coarse
    map (Grad-CAM on a 4x4 layer) can put all of a class's evidence on its object while the
    occlusion of its images finds a small pattern far from it, beyond the refined box's
    neighbourhood."""
    shares = occlusion_shares(occlusion, model, x, target, batch_size)
    if len(shares) == 0:
        return [coarse]
    mean_map = shares.mean(dim=0)
    b = coarse.box
    near = torch.zeros_like(mean_map, dtype=torch.bool)
    near[max(0, b.top - b.height) : b.top + 2 * b.height, max(0, b.left - b.width) : b.left + 2 * b.width] = (
        True
    )
    local = torch.where(near, mean_map, torch.zeros_like(mean_map))
    if not bool((local > 0).any()):
        first = coarse
    else:
        box = top_region(local, top_fraction, max_fraction)
        first = Found(box, mean_map, box_share(shares, box), True, len(shares))
    more = regions_of(shares, top_fraction, max_fraction, n_regions - 1, refined=True, exclude=[first.box])
    return [first, *more]
