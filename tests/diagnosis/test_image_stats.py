"""Image properties computed in chunks equal the whole-array computation."""

from __future__ import annotations

import numpy as np
import pytest

from stresslab.diagnosis import image_stats


@pytest.mark.parametrize("background", [None, 0.0])
def test_chunked_properties_equal_one_pass(monkeypatch: pytest.MonkeyPatch, background: float | None) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(23, 3, 6, 5), dtype=np.uint8)
    whole = image_stats._properties(x, background, 0.05)
    monkeypatch.setattr(image_stats, "CHUNK_VALUES", 4 * 3 * 6 * 5)  # 4 images a chunk
    chunked = image_stats.image_properties(x, background)
    for name in image_stats.PROPERTIES:
        np.testing.assert_array_equal(chunked[name], whole[name])
    # Hand check of one image: brightness is the mean of its pixels in [0, 1].
    assert chunked["brightness"][5] == pytest.approx(x[5].mean() / 255.0, rel=1e-6)
    assert image_stats.image_properties(x[:0], background)["contrast"].shape == (0,)


def test_float_images_in_unit_range_give_the_properties_of_their_uint8_form() -> None:
    """A run given float images keeps them in [0, 1]: they must not be divided by 255 again."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 1, 9, 9)).astype(np.uint8)
    want = image_stats.image_properties(x, background=0.0)
    got = image_stats.image_properties(x.astype(np.float32) / 255.0, background=0.0)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_blockiness_of_block_averaged_images_is_one_minus_one_over_the_block_side() -> None:
    """Every difference of a 4x4-block image lies on its grid: 1 - 1/4; a constant image has
    none: 0; a smooth ramp has its differences everywhere: the best grid holds about 1/b."""
    rng = np.random.default_rng(0)
    blocks = rng.random((3, 6, 6))
    blocky = np.kron(blocks, np.ones((4, 4)))[:, None]  # (3, 1, 24, 24), uniform 4x4 blocks
    ramp = np.tile(np.linspace(0, 1, 24), (24, 1))[None, None]
    flat = np.full((1, 1, 24, 24), 0.5)
    got = image_stats.image_properties(np.concatenate([blocky, ramp, flat]).astype(np.float32))["blockiness"]
    np.testing.assert_allclose(got[:3], 0.75, atol=1e-6)
    # The ramp's 23 equal column steps (no row steps): the best of b offsets holds ceil(23 / b)
    # of them, an excess of ceil(23 / b) / 23 - 1 / b, largest at b = 7: 4/23 - 1/7.
    assert got[3] == pytest.approx(4 / 23 - 1 / 7, rel=1e-5)  # float32 steps
    assert got[4] == 0.0
    # Shifting the grid by one pixel keeps it on a grid (another offset).
    shifted = np.roll(blocky[:1], 1, axis=3).astype(np.float32)
    assert image_stats.image_properties(shifted)["blockiness"][0] > 0.5


def test_flat_area_counts_constant_3x3_patches_off_the_background() -> None:
    """A 6x6 patch of one gray value on a noisy image: its 4x4 interior pixels are the centres
    of constant 3x3 windows (16 of 100 pixels); the plain background does not count."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 1, 10, 10)).astype(np.uint8)
    x[0, 0, 2:8, 3:9] = 128
    x[1] = 0  # all background
    x[1, 0, 0:3, 0:3] = 200  # one constant 3x3 window: its centre
    got = image_stats.image_properties(x, background=0.0)["flat_area"]
    assert got[0] == pytest.approx(16 / 100)
    assert got[1] == pytest.approx(1 / 100)
    # Without a plain background, the black field's constant windows count too: 8x8 centres
    # minus the windows that hold both the square and black (the 3x3 block of centres at
    # rows/cols 1-3 but the one inside the square, (1, 1)).
    no_bg = image_stats.image_properties(x[1:], background=None)["flat_area"][0]
    assert no_bg == pytest.approx((64 - 9 + 1) / 100)
