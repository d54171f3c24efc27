"""Token sequences of vision transformers read as feature maps.

A timm ViT / DeiT (and any model shaped like one) keeps its image as a sequence of tokens
(N, L, D): ``num_prefix_tokens`` leading tokens (the class token, DeiT's distillation token,
register tokens) followed by one token per patch, row-major over the patch grid
``patch_embed.grid_size`` (h, w). :func:`token_grid` finds that layout in a model and
:meth:`TokenGrid.to_map` turns a sequence into the (N, D, h, w) map Grad-CAM reads, as
pytorch-grad-cam's ``reshape_transform`` for ViTs does.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from stresslab.errors import ConfigError


@dataclass(frozen=True)
class TokenGrid:
    """``prefix`` leading tokens, then ``grid`` = (h, w) patch tokens, row-major."""

    prefix: int
    grid: tuple[int, int]

    @property
    def length(self) -> int:
        """Sequence length L = prefix + h * w."""
        return self.prefix + self.grid[0] * self.grid[1]

    def fits_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` is that of a token sequence (N, L, D) of this layout with more
        than one patch."""
        return len(shape) == 3 and shape[1] == self.length and self.length - self.prefix > 1

    def fits(self, out: object) -> bool:
        """Whether ``out`` is a token sequence (N, L, D) of this layout (more than one patch)."""
        return isinstance(out, Tensor) and self.fits_shape(tuple(out.shape))

    def to_map(self, tokens: Tensor) -> Tensor:
        """(N, L, D) tokens -> (N, D, h, w) map of the patch tokens (prefix tokens dropped).

        Raises :class:`ConfigError` when L is not ``prefix + h * w``."""
        if not self.fits(tokens):
            raise ConfigError(
                f"a token sequence of shape {tuple(tokens.shape)} does not fit the model's patch grid "
                f"({self.prefix} prefix tokens + {self.grid[0]}x{self.grid[1]} patches = {self.length})"
            )
        n, _, d = tokens.shape
        h, w = self.grid
        return tokens[:, self.prefix :].transpose(1, 2).reshape(n, d, h, w)


def _owner(model: nn.Module) -> nn.Module | None:
    """The (sub)module holding ``patch_embed.grid_size`` and ``num_prefix_tokens``."""
    for module in model.modules():
        embed = getattr(module, "patch_embed", None)
        has_grid = isinstance(embed, nn.Module) and hasattr(embed, "grid_size")
        if has_grid and hasattr(module, "num_prefix_tokens"):
            return module
    return None


def token_grid(model: nn.Module) -> TokenGrid | None:
    """The token layout of a ViT-like ``model`` (a timm ``VisionTransformer``, maybe wrapped),
    or ``None`` when no submodule has ``patch_embed.grid_size`` and ``num_prefix_tokens``.

    ``num_prefix_tokens`` counts the class, distillation and register tokens; a model with
    ``no_embed_class`` still carries them in its sequence, so they are dropped the same way.
    """
    owner = _owner(model)
    if owner is None:
        return None
    grid = tuple(int(g) for g in owner.patch_embed.grid_size)  # type: ignore[union-attr]
    if len(grid) != 2:
        return None
    return TokenGrid(prefix=int(owner.num_prefix_tokens), grid=(grid[0], grid[1]))  # type: ignore[arg-type]


def last_block_norm(model: nn.Module) -> str:
    """Dotted name (in ``model``) of the last transformer block's ``norm1``, the layer
    pytorch-grad-cam recommends for ViTs: the head reads the class token only, so every
    patch token after the last block's attention has zero gradient, while the last block's
    attention still mixes the patch tokens into the class token. ``""`` when the model has no
    ``blocks`` sequence whose last block has a ``norm1``."""
    owner = _owner(model)
    blocks = getattr(owner, "blocks", None) if owner is not None else None
    if not isinstance(blocks, nn.Sequential) or not len(blocks):
        return ""
    last = blocks[-1]
    norm = getattr(last, "norm1", None)
    if not isinstance(norm, nn.Module):
        return ""
    for name, module in model.named_modules():
        if module is norm:
            return name
    return ""


def as_map(out: object, grid: TokenGrid | None) -> Tensor | None:
    """A layer's output as a (N, C, h, w) map: a 4-D tensor as it is, a token sequence of
    ``grid``'s layout reshaped (:meth:`TokenGrid.to_map`), anything else ``None``."""
    if isinstance(out, Tensor) and out.ndim == 4:
        return out
    if grid is not None and grid.fits(out):
        assert isinstance(out, Tensor)
        return grid.to_map(out)
    return None
