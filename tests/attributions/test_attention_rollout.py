"""Attention rollout: a hand-computed 2-layer case, the weights read from a tiny timm ViT
against softmax(q k^T * scale) recomputed by hand, and the model left as it came in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stresslab.attributions import ATTRIBUTIONS, AttentionRollout
from stresslab.attributions.attention_rollout import rollout, rollout_map
from stresslab.models.attention import attention_modules, recorded_attention
from stresslab.models.tokens import TokenGrid, token_grid

timm = pytest.importorskip("timm")


def _tiny_vit(**kw: object) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    args = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "depth": 2, "num_heads": 2}
    return VisionTransformer(num_classes=3, **(args | kw)).eval()  # type: ignore[arg-type]


def test_rollout_of_two_layers_equals_the_hand_computation() -> None:
    # Three tokens: the class token and a 1x2 grid of patches; two heads per layer.
    h1 = torch.tensor([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    h2 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    w2 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    layer1 = torch.stack([h1, h2])[None]
    layer2 = torch.stack([w2, w2])[None]
    # By hand: mean of heads + I, rows renormalised (each row sums to 2 before):
    # A1 = [[.75, .1875, .0625], [0, .75, .25], [.25, 0, .75]], A2 = [[.5, .5, 0], [0, 1, 0], [0, 0, 1]];
    # class row of A2 @ A1 = .5 * A1[0] + .5 * A1[1] = [.375, .46875, .15625].
    rolled = rollout([layer1, layer2])
    torch.testing.assert_close(rolled[0, 0], torch.tensor([0.375, 0.46875, 0.15625], dtype=torch.float64))
    torch.testing.assert_close(rolled.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    got = rollout_map(rolled, TokenGrid(prefix=1, grid=(1, 2)))
    torch.testing.assert_close(got, torch.tensor([[[[0.46875, 0.15625]]]], dtype=torch.float64))
    # max over heads, one layer: class row [.5, .5, .25] + [1, 0, 0], divided by 2.25.
    one = rollout([layer1], head_fusion="max")
    torch.testing.assert_close(one[0, 0], torch.tensor([1.5, 0.5, 0.25], dtype=torch.float64) / 2.25)
    # Without prefix tokens the map is the mean of all rows.
    flat = rollout_map(rolled, TokenGrid(prefix=0, grid=(1, 3)))
    torch.testing.assert_close(flat[0, 0, 0], rolled[0].mean(0))
    with pytest.raises(ValueError, match="head_fusion"):
        rollout([layer1], head_fusion="median")


def _attention_by_hand(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """softmax(q k^T * scale) of each block, from its norm1 output and its qkv weights."""
    inputs: list[torch.Tensor] = []
    handles = [b.norm1.register_forward_hook(lambda m, a, o: inputs.append(o)) for b in model.blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for block, z in zip(model.blocks, inputs, strict=True):
        attn = block.attn
        n, length, _ = z.shape
        qkv = (z @ attn.qkv.weight.T + attn.qkv.bias).reshape(n, length, 3, attn.num_heads, -1)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        scale = q.shape[-1] ** -0.5
        out.append(torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1))
    return out


def test_weights_read_from_a_timm_vit_equal_a_hand_recomputation_and_the_model_is_restored() -> None:
    model = _tiny_vit()
    x = torch.rand(2, 1, 16, 16)
    assert len(attention_modules(model)) == 2 and all(b.attn.fused_attn for b in model.blocks)
    with torch.no_grad():
        before = model(x)
    with recorded_attention(model) as weights, torch.no_grad():
        during = model(x)
    assert all(b.attn.fused_attn for b in model.blocks)  # put back
    assert not any(b.attn.attn_drop._forward_hooks for b in model.blocks)
    torch.testing.assert_close(during, before, atol=1e-5, rtol=1e-5)  # the unfused path is the same function
    ref = _attention_by_hand(model, x)
    assert [tuple(w.shape) for w in weights] == [(2, 2, 17, 17)] * 2
    for got, want in zip(weights, ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    method = ATTRIBUTIONS.build("attention_rollout")
    assert method.unavailable(model) == ""
    maps = method.attribute(model, x, torch.tensor([0, 1]))
    assert maps.shape == (2, 16, 16)
    grid = token_grid(model)
    assert grid == TokenGrid(prefix=1, grid=(4, 4))
    raw = rollout_map(rollout(ref), grid).float()
    expected = torch.nn.functional.interpolate(raw, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-4)
    assert (maps.flatten(1).std(1) > 0).all()
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_register_tokens_are_dropped_and_other_models_are_refused_with_the_reason() -> None:
    model = _tiny_vit(reg_tokens=2, no_embed_class=True)
    assert token_grid(model) == TokenGrid(prefix=3, grid=(4, 4))
    x = torch.rand(2, 1, 16, 16)
    maps = AttentionRollout(head_fusion="min").attribute(model, x, torch.tensor([0, 0]))
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    assert "no attention layers" in AttentionRollout().unavailable(cnn)
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(head_fusion="sum")
