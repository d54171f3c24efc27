"""Photometric augmentation: each part reproduced image by image with torchvision from the
same random draws, determinism, validation, and the training option that turns it on."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from stresslab.data.photometric import MIN_BLUR_SIGMA, PhotometricAugment
from stresslab.errors import ConfigError
from stresslab.train.config import AugmentConfig


def _batch(n: int = 8, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, 12, 12, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def test_off_is_identity_and_settings_are_checked() -> None:
    x = _batch()
    assert not PhotometricAugment().enabled
    assert PhotometricAugment()(x, torch.Generator().manual_seed(0)) is x
    for bad in ({"brightness": 1.5}, {"contrast": -0.1}, {"blur_prob": 2.0}, {"noise_std": math.nan}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            PhotometricAugment(**bad)
    with pytest.raises(ConfigError, match="blur_sigma"):
        PhotometricAugment(blur_prob=0.5, blur_sigma=0.01)


@pytest.mark.parametrize("c", [1, 3])
def test_brightness_and_contrast_match_torchvision_per_image(c: int) -> None:
    x = _batch(c=c)
    out = PhotometricAugment(brightness=0.5, contrast=0.6)(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    fb, fc = _uniform(g, len(x), 0.5, 1.5), _uniform(g, len(x), 0.4, 1.6)
    for i in range(len(x)):
        ref = TF.adjust_contrast(TF.adjust_brightness(x[i], float(fb[i])), float(fc[i]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_blur_only_where_drawn_and_as_torchvision() -> None:
    x = _batch(n=16)
    out = PhotometricAugment(blur_prob=0.5, blur_sigma=2.0)(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    do = _uniform(g, 16, 0, 1) < 0.5
    sigma = _uniform(g, 16, MIN_BLUR_SIGMA, 2.0)
    assert 0 < int(do.sum()) < 16
    for i in range(16):
        ref = TF.gaussian_blur(x[i], kernel_size=[11, 11], sigma=[float(sigma[i])] * 2) if do[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_noise_std_per_image_is_seeded() -> None:
    x = torch.full((64, 1, 16, 16), 0.5)
    aug = PhotometricAugment(noise_std=0.2)
    out = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(7)))
    g = torch.Generator().manual_seed(7)
    std = _uniform(g, 64, 0.0, 0.2)
    noise = torch.randn(x.shape, generator=g)
    torch.testing.assert_close(out, (x + std.view(-1, 1, 1, 1) * noise).clamp(0, 1))
    # The spread of each image follows its own drawn std (values at 0.5 +- 3 * 0.2 stay unclipped).
    measured = out.flatten(1).std(dim=1)
    assert float((measured - std).abs().max()) < 0.05


def test_training_option_reaches_the_augmentation() -> None:
    a = AugmentConfig(brightness=0.3, noise_std=0.05)
    aug = PhotometricAugment(a.brightness, a.contrast, a.blur_prob, a.blur_sigma, a.noise_std)
    assert aug.enabled and aug.brightness == 0.3 and aug.noise_std == 0.05
    with pytest.raises(ValueError, match="contrast"):
        AugmentConfig(contrast=1.5)


def test_training_applies_it_seeded() -> None:
    from stresslab.train.config import TrainConfig
    from stresslab.train.loop import train
    from tests.conftest import TinyNet, make_split

    split = make_split()

    def weights(augment: AugmentConfig) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = TinyNet(split.info)
        cfg = TrainConfig(epochs=1, batch_size=16, lr=0.01, augment=augment)
        train(model, split, cfg, device=torch.device("cpu"), seed=0)
        return [p.detach().clone() for p in model.parameters()]

    plain, noisy = weights(AugmentConfig()), weights(AugmentConfig(noise_std=0.2, brightness=0.5))
    again = weights(AugmentConfig(noise_std=0.2, brightness=0.5))
    assert any(not torch.equal(a, b) for a, b in zip(plain, noisy, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(noisy, again, strict=True))
