"""Where a model's feature maps end: the Grad-CAM layer of a model stresslab did not write.

:func:`find_cam_layer` runs one forward pass with hooks on every module and returns the
last module whose output is a feature map (N, C, h, w) before the global pooling, the
layer Grad-CAM (Selvaraju et al., ICCV 2017) explains by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from stresslab.errors import ConfigError
from stresslab.models.layers import PASS_THROUGH as _PASS_THROUGH
from stresslab.models.layers import record_layers
from stresslab.models.tokens import last_block_norm, token_grid


@dataclass
class CamSearch:
    """The outcome of :func:`find_cam_layer`.

    ``layer`` is the dotted name of the chosen module (``""`` when there is none, with
    ``problem`` saying why), ``candidates`` every module with a 4-D output before the
    pooling (in the order their forward calls finished) and ``size`` the chosen map's
    (h, w) on the probe input.
    """

    layer: str = ""
    candidates: list[str] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    problem: str = ""

    def require(self, label: str) -> str:
        """``layer``, or a :class:`ConfigError` naming ``label``, the reason and the candidates."""
        if self.layer:
            return self.layer
        shown = ", ".join(self.candidates[-8:]) or "(none)"
        raise ConfigError(
            f"{label}: no Grad-CAM layer found automatically: {self.problem}. Layers with "
            f"(N, C, H, W) output before pooling: {shown}. Name one with "
            "probes.explain.methods.gradcam.layer (and gradcam_plus_plus.layer), or leave the "
            "CAM methods out of probes.explain.methods"
        )


def _is_pool(module: nn.Module) -> bool:
    kind = type(module).__name__
    return "Adaptive" in kind and "Pool" in kind


def _skipped(module: nn.Module) -> bool:
    return isinstance(module, _PASS_THROUGH) or _is_pool(module)


def find_cam_layer(
    model: nn.Module, x: Tensor, *, head: str = "", prefix: str = "", channels_last_output: bool = False
) -> CamSearch:
    """The last module of ``model`` with a (N, C, h, w) output before global pooling; for a
    ViT-like model (:func:`~stresslab.models.tokens.token_grid`) the last block's ``norm1``,
    read on the patch grid (:func:`~stresslab.models.tokens.last_block_norm`).

    One forward pass of ``x`` (N, C, H, W) in eval mode, without gradients, with hooks on
    every submodule. Pooling starts at the last call, before the first call of ``head`` (the
    dotted name of the classifier), of a global pool: an adaptive pool
    (``nn.AdaptiveAvgPool2d``, timm's ``SelectAdaptivePool2d``, ...) whose output is (N, C)
    or (N, C, 1, 1) and after which no module outputs a map larger than 1x1 (so the pool of
    a squeeze-excitation block is not one). Without one (a functional pool, a class token)
    pooling starts at ``head``. Among the modules whose forward finished before that, the
    last one with a 4-D output is chosen, skipping pass-through modules (Identity, Dropout,
    Flatten) and adaptive pools (they only resample); an enclosing block finishes after its
    last child, so the block is chosen (``layer4`` rather than ``layer4.1.relu``). No layer is
    chosen, and ``problem`` says why, when no module outputs a 4-D map, when a module
    between the last map and the pooling outputs a token sequence (N, L, D) (a transformer
    whose tokens lie on no patch grid), or when
    ``channels_last_output`` says the maps are (N, h, w, C). Names are prefixed with
    ``prefix``. The model's mode, parameters and gradients are left as they were.
    """
    modules = {n: m for n, m in model.named_modules() if n}
    events = _forward_events(model, x)
    grid, norm = token_grid(model), last_block_norm(model)
    if grid is not None and norm:
        # A ViT: its patch tokens are read on the patch grid (see stresslab.models.tokens).
        return CamSearch(layer=prefix + norm, candidates=[prefix + norm], size=grid.grid)
    end = _pooling_start(events, modules, head)
    done = [(name, ndim, shape) for kind, name, ndim, shape in events[:end] if kind == "done"]
    maps = [(name, shape) for name, ndim, shape in done if ndim == 4 and not _skipped(modules[name])]
    search = CamSearch(candidates=list(dict.fromkeys(prefix + name for name, _ in maps)))
    if not maps:
        search.problem = "no module outputs a (N, C, H, W) feature map"
        return search
    last, shape = maps[-1]
    after = done[max(i for i, (name, _, _) in enumerate(done) if name == last) + 1 :]
    tokens = [name for name, ndim, _ in after if ndim == 3]
    if tokens:
        search.problem = (
            f"after its last feature map ({prefix}{last}) the model works on token sequences "
            f"(N, L, D), e.g. {prefix}{tokens[-1]}: a CAM of an early layer explains little"
        )
        return search
    if channels_last_output:
        search.problem = "its feature maps are channels-last (N, H, W, C), which Grad-CAM does not read"
        return search
    search.layer, search.size = prefix + last, (int(shape[2]), int(shape[3]))
    return search


Event = tuple[str, str, int, tuple[int, ...]]  # (call | done, module name, ndim, output shape)


def _forward_events(model: nn.Module, x: Tensor) -> list[Event]:
    """Every forward call of ``model``'s named submodules as it starts (``call``, with the
    ndim of its first input) and finishes (``done``, with its output's ndim and shape; -1
    and () for a non-tensor), in order, from one pass of ``x`` (:func:`record_layers`)."""
    return [(e.kind, e.name, e.ndim, e.shape) for e in record_layers(model, x)]


def _pooling_start(events: list[Event], modules: dict[str, nn.Module], head: str) -> int:
    """The index in ``events`` where pooling starts (see :func:`find_cam_layer`): the last
    call of a global pool before the first call of ``head``, else that call (else the end)."""

    def under_head(name: str) -> bool:
        return bool(head) and (name == head or name.startswith(head + "."))

    # Pooling starts at the last global pool called before the classifier: an adaptive pool
    # with an (N, C) or (N, C, 1, 1) output after which no larger map is made (the pools of
    # squeeze-excitation blocks are followed by their block's full-size output).
    end = next(
        (i for i, (kind, name, _, _) in enumerate(events) if kind == "call" and under_head(name)), None
    )
    end = len(events) if end is None else end
    flat = {
        name
        for kind, name, ndim, shape in events[:end]
        if kind == "done" and _is_pool(modules[name]) and (ndim == 2 or shape[-2:] == (1, 1))
    }

    def global_pool(i: int) -> bool:
        kind, name, _, _ = events[i]
        later = events[i:end]
        return (
            kind == "call"
            and name in flat
            and not any(k == "done" and n == 4 and s[2] * s[3] > 1 for k, _, n, s in later)
        )

    return max((i for i in range(end) if global_pool(i)), default=end)
