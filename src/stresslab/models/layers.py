"""The one layer finder: a forward pass with hooks that records what each module did.

:func:`record_layers` is the only place that runs a model with hooks on its modules to
learn about its layers (which modules read the image, which give feature maps, in which
order they finish). :func:`choose_cam_layer` uses it to pick the Grad-CAM layer by trying
the candidates on real images: the deepest layer whose class activation maps are not
constant on at least ``min_share`` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.devices import images_per_pass
from stresslab.models.tokens import TokenGrid, as_map, token_grid
from stresslab.scoped import inference_scope

# Activations after which a stage's output is read (the "after its activation").
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.PReLU,
)
# Modules that pass a map on unchanged: never a layer to explain themselves.
PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)


@dataclass(frozen=True)
class LayerEvent:
    """One hook firing during :func:`record_layers`.

    ``kind`` is ``"call"`` (before the module's forward; ``shape`` is its first input's) or
    ``"done"`` (after it; ``shape`` is its output's, ``()`` when the output is not a
    tensor). ``reads_input`` (call events only): the module's first argument is the very
    tensor given to the model. ``module`` is the module itself.
    """

    kind: Literal["call", "done"]
    name: str
    module: nn.Module
    shape: tuple[int, ...]
    reads_input: bool = False

    @property
    def ndim(self) -> int:
        """Number of dimensions of ``shape``; -1 when it is not a tensor."""
        return len(self.shape) if self.shape else -1

    @property
    def is_spatial_map(self) -> bool:
        """A done event with an (N, C, h, w) output, h * w > 1."""
        return self.kind == "done" and self.ndim == 4 and self.shape[2] * self.shape[3] > 1


def record_layers(
    model: nn.Module, x: Tensor, which: Callable[[str, nn.Module], bool] | None = None
) -> list[LayerEvent]:
    """Run ``x`` (N, C, H, W) through ``model`` once and record every hooked module's call and
    completion, in the order they happened.

    ``which(name, module)`` selects the named submodules to hook (all of them when
    ``None``; the model itself is never hooked). The pass runs in eval mode without
    gradients; hooks are removed and the model's mode, parameters and gradients are left as
    they were, also when the forward raises (the error propagates).
    """
    events: list[LayerEvent] = []

    def pre(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            first = args[0] if args and isinstance(args[0], Tensor) else None
            shape = tuple(first.shape) if first is not None else ()
            events.append(LayerEvent("call", name, module, shape, first is x))

        return hook

    def post(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            shape = tuple(out.shape) if isinstance(out, Tensor) else ()
            events.append(LayerEvent("done", name, module, shape))

        return hook

    chosen = [(n, m) for n, m in model.named_modules() if n and (which is None or which(n, m))]
    handles = [m.register_forward_pre_hook(pre(n)) for n, m in chosen]
    handles += [m.register_forward_hook(post(n)) for n, m in chosen]
    try:
        with inference_scope(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return events


@dataclass(frozen=True)
class LayerTrial:
    """One candidate layer tried by :func:`choose_cam_layer`: its map size (h, w) and the
    share of sample images whose Grad-CAM map on it is not constant, in [0, 1]."""

    layer: str
    size: tuple[int, int]
    share: float


@dataclass
class CamChoice:
    """The outcome of :func:`choose_cam_layer`: the chosen ``layer`` (``""`` when no
    candidate passes: then ``reason`` says so), its map ``size``, its ``share`` of
    non-constant maps, every candidate ``tried`` (deepest first) and ``reason``, a sentence
    for the report saying why this layer."""

    layer: str = ""
    size: tuple[int, int] = (0, 0)
    share: float = 0.0
    tried: list[LayerTrial] = field(default_factory=list)
    reason: str = ""

    def record(self) -> dict[str, Any]:
        """JSON-safe form for the run's record."""
        return {
            "layer": self.layer,
            "size": list(self.size),
            "share_nonconstant": self.share,
            "reason": self.reason,
            "tried": [
                {"layer": t.layer, "size": list(t.size), "share_nonconstant": t.share} for t in self.tried
            ],
        }


def constant_maps(maps: Tensor, rel_tol: float = 1e-6) -> Tensor:
    """Which maps (N, ...) are constant: max - min <= ``rel_tol`` * max(|max|, |min|, tiny).

    -> (N,) bool. A map of zeros is constant; so is a map whose spread is rounding noise.
    """
    flat = maps.flatten(1).double()
    hi, lo = flat.amax(dim=1), flat.amin(dim=1)
    scale = torch.maximum(hi.abs(), lo.abs()).clamp(min=1e-30)
    return (hi - lo) <= rel_tol * scale


def is_candidate(module: nn.Module, tokens: bool = False) -> bool:
    """A module whose output can be a stage's output after its activation: an activation
    or a block of modules (a block of a CNN ends with its activation or a residual sum).
    In a vision transformer (``tokens``) also a LayerNorm: the input of a block's attention
    (``blocks.<i>.norm1``) is the layer pytorch-grad-cam recommends."""
    if isinstance(module, PASS_THROUGH):
        return False
    if tokens and isinstance(module, nn.LayerNorm):
        return True
    return isinstance(module, ACTIVATIONS) or any(True for _ in module.children())


def cam_candidates(
    model: nn.Module, x: Tensor, skip: tuple[str, ...] = ("normalize",), extra: tuple[str, ...] = ()
) -> list[tuple[str, tuple[int, int]]]:
    """Candidate Grad-CAM layers of ``model`` on images ``x`` (N, C, H, W) in [0, 1], deepest
    first: activations and blocks with an (N, C, h, w) output, h * w > 1, or, in a vision
    transformer, a token sequence of its patch grid (:func:`~stresslab.models.tokens.token_grid`;
    its LayerNorms count too), in the reverse order their forward finished, each name once
    (``skip``: names and their children left out; ``extra`` names are recorded whatever
    their kind). Returns ``[(name, (h, w)), ...]``."""
    grid = token_grid(model)

    def which(name: str, module: nn.Module) -> bool:
        if name in extra:
            return True
        skipped = any(name == s or name.startswith(s + ".") for s in skip)
        return not skipped and is_candidate(module, tokens=grid is not None)

    seen: dict[str, tuple[int, int]] = {}
    for event in record_layers(model, x, which):
        if event.is_spatial_map:
            seen.setdefault(event.name, (int(event.shape[2]), int(event.shape[3])))
        elif grid is not None and event.kind == "done" and grid.fits_shape(event.shape):
            seen.setdefault(event.name, grid.grid)
    return list(reversed(seen.items()))


def _grab(acts: dict[str, Tensor], name: str, grid: TokenGrid | None) -> Callable[[nn.Module, Any, Any], Any]:
    """A forward hook keeping ``name``'s first (N, C, h, w) output (or token sequence of
    ``grid``'s layout) in ``acts``."""

    def hook(module: nn.Module, args: Any, out: Any) -> Any:
        if as_map(out, grid) is not None and name not in acts:
            acts[name] = out
            return out.clone()  # later in-place ops change the clone, not the kept output
        return None

    return hook


def cam_nonconstant(model: nn.Module, names: list[str], x: Tensor, batch_size: int = 64) -> dict[str, int]:
    """Number of images of ``x`` (N, C, H, W) in [0, 1] whose Grad-CAM map for the predicted
    class is not constant, per layer of ``names`` (one forward and one backward per batch
    for all layers at once; a layer the forward does not reach counts 0)."""
    modules = dict(model.named_modules())
    counts = dict.fromkeys(names, 0)
    grid = token_grid(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if x.ndim == 4:
        batch_size = min(batch_size, images_per_pass(x.shape[2], x.shape[3]))
    with inference_scope(model):
        for i in range(0, len(x), batch_size):
            acts: dict[str, Tensor] = {}
            handles = [modules[n].register_forward_hook(_grab(acts, n, grid)) for n in names]
            try:
                with torch.enable_grad():
                    xb = x[i : i + batch_size].to(device, torch.float32).requires_grad_(True)
                    logits = model(xb)
                    score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
                    found = [n for n in names if n in acts and acts[n].requires_grad]
                    grads = torch.autograd.grad(score, [acts[n] for n in found], allow_unused=True)
            finally:
                for h in handles:
                    h.remove()
            for name, grad in zip(found, grads, strict=True):
                act, g = as_map(acts[name].detach(), grid), as_map(grad, grid)
                if act is not None and g is not None:
                    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1))
                    counts[name] += int((~constant_maps(cam)).sum())
    return counts


def choose_cam_layer(
    model: nn.Module,
    x: Tensor,
    *,
    min_share: float = 0.95,
    batch_size: int = 64,
    skip: tuple[str, ...] = ("normalize",),
    prefer: str = "",
) -> CamChoice:
    """The Grad-CAM layer of ``model`` chosen on images ``x`` (N, C, H, W) in [0, 1].

    The candidates (:func:`cam_candidates`: each activation's and block's spatial output,
    deepest first) are tried with Grad-CAM (Selvaraju et al., ICCV 2017) for each image's
    predicted class; the deepest layer whose maps are not constant on at least
    ``min_share`` (in [0, 1]) of the images is chosen. When none reaches it, ``layer`` is
    ``""`` and ``reason`` names the best share found. ``prefer`` (e.g. the model's declared
    ``cam_layer``) is tried first and kept when it passes. The model's mode, parameters and
    gradients are left as they were.
    """
    modules = dict(model.named_modules())
    extra = (prefer,) if prefer in modules else ()
    candidates = cam_candidates(model, x[:2], skip, extra)
    candidates.sort(key=lambda c: c[0] != prefer)  # stable: the preferred layer first
    if not candidates:
        return CamChoice(reason="no layer gives a spatial (N, C, h, w) output larger than 1x1")
    counts = cam_nonconstant(model, [n for n, _ in candidates], x, batch_size)
    n = max(1, len(x))
    tried = [LayerTrial(name, size, counts[name] / n) for name, size in candidates]
    choice = CamChoice(tried=tried)
    for t in tried:
        if t.share >= min_share:
            choice.layer, choice.size, choice.share = t.layer, t.size, t.share
            deeper = tried[: tried.index(t)]
            which = "the model's declared layer" if t.layer == prefer else "the deepest layer"
            why = (
                f"{which}, and its Grad-CAM maps are non-constant on {t.share:.0%} of "
                f"{len(x)} test images (at least {min_share:.0%} asked)"
            )
            if deeper:
                worst = ", ".join(f"{d.layer} {d.share:.0%}" for d in deeper[:3])
                why += f"; tried before it: {worst}"
            choice.reason = why
            return choice
    best = max(tried, key=lambda t: t.share)
    choice.reason = (
        f"no candidate layer gives non-constant Grad-CAM maps on {min_share:.0%} of {len(x)} test images "
        f"(best: {best.layer}, {best.share:.0%})"
    )
    return choice
