"""Batched augmentation: exact flips and crops, rotation against torchvision, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from stresslab.data import BatchAugment, hflip_batch, rotate_batch, translate_batch
from stresslab.errors import ConfigError


def _batch(n: int = 32, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> torch.Tensor:
    # Strictly positive pixels so zero fill from padding is recognisable.
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.05


def test_disabled_is_identity() -> None:
    aug = BatchAugment()
    x = _batch()
    assert not aug.enabled
    assert aug(x, torch.Generator().manual_seed(0)) is x
    assert BatchAugment(hflip=True).enabled and BatchAugment(crop_padding=2).enabled
    assert BatchAugment(rotation_deg=5.0).enabled


@pytest.mark.parametrize(
    "aug",
    [BatchAugment(crop_padding=3), BatchAugment(hflip=True), BatchAugment(rotation_deg=15.0),
     BatchAugment(crop_padding=2, hflip=True, rotation_deg=10.0)],
)  # fmt: skip
def test_shape_dtype_and_range_kept(aug: BatchAugment) -> None:
    x = _batch().contiguous(memory_format=torch.channels_last)
    out = aug(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.equal(out, x)
    assert torch.equal(x, _batch())  # the input is not modified


def test_flip_is_exact_per_sample() -> None:
    x = _batch(n=64)
    out = BatchAugment(hflip=True)(x, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | kept).all())
    assert 10 < int(flipped.sum()) < 54  # p = 0.5 per sample
    assert torch.equal(hflip_batch(x[:2], torch.tensor([True, False])), torch.stack([x[0].flip(-1), x[1]]))


def test_crop_is_a_window_of_the_padded_image() -> None:
    p, x = 3, _batch(n=24)
    out = BatchAugment(crop_padding=p)(x, torch.Generator().manual_seed(3))
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    offsets = set()
    for n in range(len(x)):
        hits = [
            (oy, ox)
            for oy in range(2 * p + 1)
            for ox in range(2 * p + 1)
            if torch.equal(out[n], padded[n, :, oy : oy + h, ox : ox + w])
        ]
        assert hits, f"sample {n} is not a crop of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5  # per-sample offsets, not one for the batch


def test_crop_with_flip_is_exact() -> None:
    p, x = 2, _batch(n=24)
    out = BatchAugment(crop_padding=p, hflip=True)(x, torch.Generator().manual_seed(4))
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    mirrored = 0
    for n in range(len(x)):
        windows = [
            padded[n, :, oy : oy + h, ox : ox + w] for oy in range(2 * p + 1) for ox in range(2 * p + 1)
        ]
        plain = any(torch.equal(out[n], win) for win in windows)
        flipped = any(torch.equal(out[n], win.flip(-1)) for win in windows)
        assert plain or flipped, f"sample {n} is neither a crop nor a mirrored crop"
        mirrored += int(flipped and not plain)
    assert 0 < mirrored < len(x)


def test_all_three_equal_the_sequential_composition() -> None:
    """One grid_sample for crop + flip + rotation gives what the three steps give in turn."""
    x, n = _batch(n=16), 16
    out = BatchAugment(crop_padding=2, hflip=True, rotation_deg=10.0)(x, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)  # the documented draw order: shifts, flips, angles
    dy, dx = torch.randint(-2, 3, (2, n), generator=g)
    mirror = torch.rand(n, generator=g) < 0.5
    angles = (2 * torch.rand(n, generator=g) - 1) * 10.0
    expected = rotate_batch(hflip_batch(translate_batch(x, dy, dx), mirror), angles)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_translate_hand_case() -> None:
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    # Shift down by 1 and left by 1: row 0 and the last column fill with zeros.
    out = translate_batch(x, torch.tensor([1]), torch.tensor([-1]))
    expected = torch.tensor([[0.0, 0.0, 0.0], [2.0, 3.0, 0.0], [5.0, 6.0, 0.0]])
    assert torch.equal(out[0, 0], expected)


@pytest.mark.parametrize(("h", "w"), [(9, 9), (8, 12)])
def test_rotation_matches_torchvision(h: int, w: int) -> None:
    x = _batch(n=3, h=h, w=w)
    angles = torch.tensor([7.0, -25.0, 90.0])
    out = rotate_batch(x, angles)
    for i, angle in enumerate(angles.tolist()):
        ref = tvf.rotate(x[i : i + 1], angle, interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=0)


def test_rotation_by_90_is_rot90() -> None:
    x = _batch(n=2, h=7, w=7)
    torch.testing.assert_close(rotate_batch(x, torch.tensor([90.0, 90.0])), torch.rot90(x, 1, (2, 3)))


def test_rotation_angles_follow_the_documented_draws() -> None:
    x, deg = _batch(n=8), 12.0
    out = BatchAugment(rotation_deg=deg)(x, torch.Generator().manual_seed(5))
    u = torch.rand(8, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, rotate_batch(x, (2 * u - 1) * deg))
    assert float((2 * u - 1).abs().max() * deg) <= deg


def test_determinism_for_a_seed() -> None:
    aug = BatchAugment(crop_padding=2, hflip=True, rotation_deg=10.0)
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(0)
    assert aug(x).shape == x.shape  # default generator


def test_bad_settings_and_inputs() -> None:
    with pytest.raises(ConfigError, match="crop_padding"):
        BatchAugment(crop_padding=-1)
    with pytest.raises(ConfigError, match="rotation_deg"):
        BatchAugment(rotation_deg=float("nan"))
    with pytest.raises(ValueError, match="float batch"):
        BatchAugment(hflip=True)(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_with_cpu_and_cuda_generators() -> None:
    aug = BatchAugment(crop_padding=2, hflip=True, rotation_deg=10.0)
    x = _batch()
    ref = aug(x, torch.Generator().manual_seed(0))
    on_gpu = aug(x.cuda(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(on_gpu.cpu(), ref, atol=1e-5, rtol=0)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    assert aug(x.cuda(), cuda_gen).device.type == "cuda"
