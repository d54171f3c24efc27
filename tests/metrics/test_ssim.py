"""SSIM per image against a hand computation, torchmetrics and scikit-image."""

from __future__ import annotations

import pytest
import torch

from stresslab.metrics.ssim import K1, ssim, ssim_window

SHAPES = [(3, 3, 32, 32), (2, 1, 28, 28), (4, 1, 8, 8), (2, 3, 5, 6)]


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return x, (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)


def test_ssim_by_hand_on_flat_images() -> None:
    # Flat images have no variance: SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.5
    x, y = torch.full((1, 2, 12, 12), a), torch.full((1, 2, 12, 12), b)
    c1 = K1**2
    assert float(ssim(x, y)[0]) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    noisy = _pair((2, 3, 16, 16))[0]
    torch.testing.assert_close(ssim(noisy, noisy), torch.ones(2))
    assert ssim_window(32, 32) == (11, 1.5) and ssim_window(8, 9)[0] == 7 and ssim_window(6, 6)[0] == 5
    with pytest.raises(ValueError):
        ssim(x, y[:, :1])


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_matches_torchmetrics_on_the_valid_windows(shape: tuple[int, ...]) -> None:
    tm = pytest.importorskip("torchmetrics.functional.image")
    x, y = _pair(shape)
    size, sigma = ssim_window(shape[2], shape[3])
    # torchmetrics pads by reflection and averages over the whole image; the paper (and
    # scikit-image) average over the windows inside the image: compare on those.
    _, full = tm.structural_similarity_index_measure(
        y.double(), x.double(), data_range=1.0, sigma=sigma, reduction="none", return_full_image=True
    )
    p = (size - 1) // 2
    inner = full[..., p : full.shape[-2] - p, p : full.shape[-1] - p].flatten(1).mean(1)
    torch.testing.assert_close(ssim(x, y).double(), inner, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_matches_scikit_image(shape: tuple[int, ...]) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _pair(shape, seed=1)
    _, sigma = ssim_window(shape[2], shape[3])
    theirs = [
        metrics.structural_similarity(
            x[i].numpy(),
            y[i].numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            channel_axis=0,
        )
        for i in range(shape[0])
    ]
    torch.testing.assert_close(ssim(x, y), torch.tensor(theirs, dtype=torch.float32), atol=1e-5, rtol=0)
