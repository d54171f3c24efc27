"""SimCLR's batched views: each colour op against torchvision image by image, crops and blur
against their definitions, and the composition's contract."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from stresslab.data.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    grayscale,
    hsv_to_rgb,
    rgb_to_hsv,
)
from stresslab.data.simclr_augment import SimCLRAugment, gaussian_blur, resized_crop_flip
from stresslab.errors import ConfigError


def _images(n: int = 6, c: int = 3, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    x[0] = 0.5  # a gray image: hue is undefined there
    return x


@pytest.mark.parametrize(
    ("ours", "theirs", "lo", "hi"),
    [
        (adjust_brightness, TF.adjust_brightness, 0.2, 1.8),
        (adjust_contrast, TF.adjust_contrast, 0.2, 1.8),
        (adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
        (adjust_hue, TF.adjust_hue, -0.5, 0.5),
    ],
)
def test_colour_ops_match_torchvision_image_by_image(ours, theirs, lo, hi) -> None:  # type: ignore[no-untyped-def]
    x = _images()
    f = lo + (hi - lo) * torch.rand(len(x), generator=torch.Generator().manual_seed(1))
    out = ours(x, f)
    for i in range(len(x)):
        torch.testing.assert_close(out[i], theirs(x[i], float(f[i])), atol=2e-6, rtol=0)


def test_grayscale_and_hsv_round_trip() -> None:
    x = _images()
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=2e-6, rtol=0)
    torch.testing.assert_close(adjust_hue(x, torch.zeros(len(x))), x, atol=2e-6, rtol=0)


def test_resized_crop_flip_identity_mirror_and_a_quarter() -> None:
    x = _images(n=3, h=9, w=11)
    full = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).repeat(3, 1)
    none = torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(resized_crop_flip(x, full, none), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(resized_crop_flip(x, full, ~none), x.flip(-1), atol=1e-6, rtol=0)
    # The top-left quarter of a 4x4 ramp (value 4 r + c at row r, column c), resized back to
    # 4x4: output pixel (i, j) samples the source at (i / 2 - 1/4, j / 2 - 1/4), clipped at the
    # border; bilinear interpolation reproduces a linear ramp exactly.
    ramp = torch.arange(16.0).view(1, 1, 4, 4)
    out = resized_crop_flip(ramp, torch.tensor([[0.25, 0.25, 0.5, 0.5]]), torch.zeros(1, dtype=torch.bool))
    src = (torch.arange(4.0) / 2 - 0.25).clamp(min=0)
    torch.testing.assert_close(out[0, 0], 4 * src.view(4, 1) + src.view(1, 4))


def test_gaussian_blur_matches_torchvision_per_image() -> None:
    x = _images(n=4, h=10, w=12)
    sigma = torch.tensor([0.3, 0.8, 1.5, 2.0])
    out = gaussian_blur(x, sigma, 7)
    for i in range(4):
        ref = TF.gaussian_blur(x[i], kernel_size=[7, 7], sigma=[float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)


def test_views_are_seeded_in_range_and_differ_between_calls() -> None:
    x = _images(n=8, h=16, w=16)
    aug = SimCLRAugment(noise_std=0.05)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(aug(x, g), aug(x, g))


def test_colour_parts_touch_colour_images_only() -> None:
    still = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "hflip": 0.0, "blur": 0.0}
    gray_in = _images(n=4, c=1)
    aug = SimCLRAugment(**still, jitter=1.0, grayscale=1.0)  # type: ignore[arg-type]
    torch.testing.assert_close(aug(gray_in, torch.Generator().manual_seed(0)), gray_in, atol=1e-6, rtol=0)
    out = SimCLRAugment(**still, jitter=0.0, grayscale=1.0)(_images(), torch.Generator())  # type: ignore[arg-type]
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_noise_has_the_configured_standard_deviation() -> None:
    x = torch.full((64, 1, 16, 16), 0.5)
    still = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "hflip": 0.0, "blur": 0.0}
    out = SimCLRAugment(**still, noise_std=0.1)(x, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    assert float((out - 0.5).std()) == pytest.approx(0.1, rel=0.03)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="crop_scale"):
        SimCLRAugment(crop_scale=(0.5, 0.1))
    with pytest.raises(ConfigError, match="hflip"):
        SimCLRAugment(hflip=1.5)
