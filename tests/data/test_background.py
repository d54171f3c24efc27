"""The plain background read from the images' borders."""

from __future__ import annotations

import numpy as np
import torch

from stresslab.data.stats import plain_background


def _framed(frame: int, n: int = 50, c: int = 1, side: int = 12, seed: int = 0) -> torch.Tensor:
    """Random objects inside a one-pixel frame of value ``frame``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, c, side, side)).astype(np.uint8)
    x[:, :, 0, :] = x[:, :, -1, :] = x[:, :, :, 0] = x[:, :, :, -1] = frame
    return torch.from_numpy(x)


def test_a_plain_frame_is_the_background() -> None:
    assert plain_background(_framed(0)) == 0.0
    assert plain_background(_framed(255, c=3)) == 1.0
    assert plain_background(_framed(128).numpy()) == round(128 / 255, 4)


def test_a_frame_mostly_plain_is_still_the_background() -> None:
    x = _framed(0, n=100)
    x[:20, :, 0, :] = 200  # a fifth of the images touch the top edge: 5% of the frame off
    assert plain_background(x) == 0.0
    x[:, :, :, 0] = 200  # and every image its left edge: 32% of the frame off
    assert plain_background(x) is None


def test_varied_borders_and_tiny_images_have_none() -> None:
    rng = np.random.default_rng(1)
    assert plain_background(torch.from_numpy(rng.integers(0, 256, (40, 3, 16, 16)).astype(np.uint8))) is None
    # One channel plain, the others not: no background in every channel.
    x = _framed(0, c=3)
    x[:, 1:, 0, :] = torch.from_numpy(rng.integers(0, 256, (50, 2, 12)).astype(np.uint8))
    x[:, 1:, -1, :] = 255 - x[:, 1:, 0, :]
    assert plain_background(x) is None
    assert plain_background(torch.zeros(5, 1, 2, 2, dtype=torch.uint8)) is None
    assert plain_background(torch.zeros(0, 1, 8, 8, dtype=torch.uint8)) is None
