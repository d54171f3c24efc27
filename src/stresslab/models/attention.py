"""The attention weights of a vision transformer, read during a forward pass.

timm's ``Attention`` modules (ViT, DeiT and their kin) compute ``softmax(q k^T * scale)`` and
pass it through their ``attn_drop`` dropout before multiplying the values, unless
``fused_attn`` is set, when one fused kernel does it all and the weights never exist.
:func:`recorded_attention` turns the fused kernel off for the block, records each module's
weights from its ``attn_drop`` (the identity in eval mode) and puts everything back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The self-attention modules of ``model`` whose weights :func:`recorded_attention` can
    read (timm's ``Attention`` and modules shaped like it: ``num_heads``, ``fused_attn`` and
    an ``attn_drop`` submodule), in definition order."""
    return [(name, m) for name, m in model.named_modules() if _reads_attention(m)]


def _reads_attention(m: nn.Module) -> bool:
    has_drop = isinstance(getattr(m, "attn_drop", None), nn.Module)
    return has_drop and hasattr(m, "num_heads") and hasattr(m, "fused_attn")


@contextmanager
def recorded_attention(model: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every forward pass of ``model`` appends each attention module's
    weights (n, heads, L, L) (rows sum to 1 over the keys) to the yielded list, in the order
    the modules ran, detached.

    Each module's ``fused_attn`` is set to ``False`` for the block (the fused kernel keeps no
    weights; the unfused path computes the same function) and restored on exit, with the
    hooks removed, also when the block raises. Use it in eval mode: in train mode the
    recorded weights are after dropout.
    """
    modules = [m for _, m in attention_modules(model)]
    saved = [m.fused_attn for m in modules]
    weights: list[Tensor] = []

    def keep(module: nn.Module, args: Any, out: Any) -> None:
        weights.append(out.detach())

    handles = []
    try:
        for m in modules:
            m.fused_attn = False  # type: ignore[assignment]
            handles.append(m.attn_drop.register_forward_hook(keep))  # type: ignore[union-attr]
        yield weights
    finally:
        for h in handles:
            h.remove()
        for m, fused in zip(modules, saved, strict=True):
            m.fused_attn = fused
