"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)
for vision transformers: how much each patch flows into the class token through every layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, register_attribution
from stresslab.errors import ConfigError
from stresslab.models.attention import attention_modules, recorded_attention
from stresslab.models.tokens import TokenGrid, token_grid

HEAD_FUSIONS = ("mean", "max", "min")


def rollout(attentions: Sequence[Tensor], head_fusion: str = "mean") -> Tensor:
    """The attention rollout (n, L, L) of per-layer weights ``attentions``, each (n, heads, L, L)
    with rows summing to 1, in the order the layers run.

    Per layer the heads are fused (``mean``, or the element-wise ``max`` / ``min``), the
    identity added for the residual connection and each row renormalised to sum 1:
    ``A_l = (fuse(W_l) + I) / rowsum``; the rollout is ``A_L @ ... @ A_2 @ A_1``, whose row t
    says how much of each input token reaches token t after the last layer.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not attentions:
        raise ValueError("attention rollout needs the weights of at least one attention layer")
    out: Tensor | None = None
    for weights in attentions:
        w = weights.double()
        if head_fusion == "mean":
            fused = w.mean(dim=1)
        elif head_fusion == "max":
            fused = w.amax(dim=1)
        else:
            fused = w.amin(dim=1)
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        out = fused if out is None else fused @ out
    assert out is not None
    return out


def rollout_map(rolled: Tensor, grid: TokenGrid) -> Tensor:
    """(n, L, L) rollout -> (n, 1, h, w): the class token's row (the first token) over the
    patch tokens, on the patch grid. Without prefix tokens (a model that pools its tokens)
    the mean of all rows, the rollout of the pooled token."""
    row = rolled[:, 0] if grid.prefix > 0 else rolled.mean(dim=1)
    h, w = grid.grid
    return row[:, grid.prefix :].reshape(-1, 1, h, w)


@register_attribution("attention_rollout")
class AttentionRollout(Attribution):
    """Attention rollout (Abnar & Zuidema 2020) of a vision transformer, as in vit-explain:
    the rollout (:func:`rollout`) of every attention layer's weights, read from the class
    token over the patch tokens (:func:`rollout_map`), upsampled bilinearly to the image.

    ``head_fusion`` (``mean``, ``max`` or ``min``) fuses the heads of each layer. The map does
    not depend on the target class (attention is class-agnostic); it is non-negative and
    needs one forward pass per image. Only for models with timm-style ``Attention`` modules
    and a patch grid (``unavailable`` says why not otherwise); the weights are read with the
    fused attention kernel turned off for the pass and turned back on after it.
    """

    label: ClassVar[str] = "attention rollout"
    options: ClassVar[tuple[str, ...]] = ("head_fusion",)
    gradient_based: ClassVar[bool] = False
    needs_attention: ClassVar[bool] = True

    def __init__(self, head_fusion: str = "mean") -> None:
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        self.head_fusion = head_fusion

    def unavailable(self, model: nn.Module) -> str:
        if not attention_modules(model):
            return "the model has no attention layers (timm-style Attention modules) to roll out"
        if token_grid(model) is None:
            return "the model's tokens lie on no patch grid (no patch_embed.grid_size and num_prefix_tokens)"
        return ""

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        reason = self.unavailable(model)
        grid = token_grid(model)
        if reason or grid is None:
            raise ConfigError(f"{self.label}: {reason}")
        with recorded_attention(model) as weights, torch.no_grad():
            model(x)
        if any(w.shape[-1] != grid.length for w in weights):
            shapes = sorted({tuple(w.shape) for w in weights})
            raise ConfigError(
                f"{self.label}: attention weights {shapes} do not fit the patch grid "
                f"({grid.prefix} prefix tokens + {grid.grid[0]}x{grid.grid[1]} patches)"
            )
        return rollout_map(rollout(weights, self.head_fusion), grid).float()
