"""Image properties computed in chunks equal the whole-array computation."""

from __future__ import annotations

import numpy as np
import pytest

from stresslab.diagnosis import image_stats


@pytest.mark.parametrize("background", [None, 0.0])
def test_chunked_properties_equal_one_pass(monkeypatch: pytest.MonkeyPatch, background: float | None) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(23, 3, 6, 5), dtype=np.uint8)
    whole = image_stats._properties(x, background, 0.05)
    monkeypatch.setattr(image_stats, "CHUNK", 4)
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
