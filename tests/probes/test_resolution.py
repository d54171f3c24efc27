"""Lower resolution as a degradation, and the corruption probe's resolution check."""

from __future__ import annotations

import math

import pytest
import torch

from stresslab.corruptions.resolution import lower_resolution
from stresslab.errors import ConfigError
from stresslab.probes.corruption import CorruptionProbe
from stresslab.probes.corruption.resolution import score
from stresslab.probes.corruption.resolution_present import metrics, summary
from tests.corruptions.test_corruptions import make_ctx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize(("size", "factor"), [(28, 3), (32, 4), (9, 2), (5, 8)])
def test_keeps_shape_dtype_and_range(dtype: torch.dtype, size: int, factor: int) -> None:
    x = torch.rand(3, 3, size, size + 1, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = lower_resolution(x, factor)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


def test_factor_one_is_the_identity() -> None:
    x = torch.rand(2, 1, 8, 8)
    assert lower_resolution(x, 1) is x


def test_hand_cases() -> None:
    # A checkerboard of 1-pixel squares averages to gray at half resolution: the detail is gone.
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float()[None, None]
    assert torch.allclose(lower_resolution(board, 2), torch.full_like(board, 0.5))
    # A horizontal ramp through pixel centres survives area means and bilinear upsampling
    # exactly, except at the border columns (clamped to the edge pixel's value).
    w = 16
    ramp = ((torch.arange(w) + 0.5) / w).expand(1, 1, 4, w).contiguous()
    out = lower_resolution(ramp, 2)
    assert torch.allclose(out[..., 1:-1], ramp[..., 1:-1], atol=1e-6)
    # Factor 2 of a 2x2-block image: the blocks' means come back in the blocks' centres.
    blocks = (
        torch.tensor([[0.2, 0.8], [0.4, 0.6]]).repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    )
    assert lower_resolution(blocks, 2)[0, 0, 0, 0] == pytest.approx(0.2)
    assert lower_resolution(blocks, 2)[0, 0, 3, 3] == pytest.approx(0.6)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="factor"):
        lower_resolution(torch.rand(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="float images"):
        lower_resolution(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2)


def test_scores_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    clean = torch.tensor([0, 0, 1, 1, 1, 1])  # one confusion: 0 -> 1
    at_x2 = torch.tensor([0, 1, 1, 1, 0, 1])  # adds 0 -> 1 (in the pair) and 1 -> 0 (not)
    s = score(labels, clean, at_x2[None], (2,), ("a", "b"))
    assert [(p.true, p.pred) for p in s.pairs] == [(0, 1)]
    assert s.pairs[0].clean == pytest.approx(1 / 3) and s.pairs[0].shares == pytest.approx((2 / 3,))
    assert (s.new_errors, s.new_in_pairs, s.gained, s.lost) == ((2,), (1,), (1,), (0,))
    assert s.deepening_p(0) == pytest.approx(0.5)  # one discordant image: P(X >= 1 | n=1) = 1/2
    m = metrics(s)
    assert m["resolution.x2.accuracy"] == pytest.approx(3 / 6)
    assert m["resolution.x2.drop"] == pytest.approx(5 / 6 - 3 / 6)
    assert m["resolution.x2.class.0.accuracy"] == pytest.approx(1 / 3)
    assert m["resolution.x2.class.1.accuracy"] == pytest.approx(2 / 3)
    assert m["resolution.x2.new_errors_in_top_pairs"] == pytest.approx(0.5)
    assert m["resolution.clean.top_pairs_share"] == pytest.approx(1 / 3)
    assert any("does not significantly deepen" in line for line in summary(s))


def test_probe_runs_resolution_on_the_same_sample() -> None:
    ctx = make_ctx(n_test=24, channels=3)
    res = CorruptionProbe(corruptions=["contrast"], severities=[1], max_images=12).run(ctx)
    assert res.data["resolution"]["factors"] == [2, 3, 4]
    preds = res.data["resolution"]["predictions"]
    assert len(preds) == 3 and all(len(p) == 12 for p in preds)
    for f in (2, 3, 4):
        assert 0.0 <= res.metrics[f"resolution.x{f}.accuracy"] <= 1.0
    # The x4 predictions are those of the model on the degraded sample images.
    from stresslab.data.base import to_float

    subset = ctx.sample(12, "check")
    x = lower_resolution(to_float(ctx.split.test_x[subset]), 4)
    with torch.no_grad():
        ctx.model.eval()
        expected = ctx.model(x).argmax(1)
    # make_ctx leaves the model in training mode (BatchNorm); the probe predicts in eval mode.
    assert preds[2] == expected.tolist()
    assert "resolution" in res.figures and math.isfinite(res.metrics["resolution.x4.drop"])
    off = CorruptionProbe(corruptions=["contrast"], severities=[1], max_images=12, resolution=[]).run(ctx)
    assert not any(k.startswith("resolution") for k in off.metrics)


def test_probe_rejects_bad_factors() -> None:
    for bad in ([1], [2, "x"], [True]):
        with pytest.raises(ConfigError, match="resolution"):
            CorruptionProbe(resolution=bad)  # type: ignore[arg-type]
