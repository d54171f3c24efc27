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
