"""Mixup, CutMix and random erasing: shapes, soft targets, exact CutMix area, seeds, loss."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from stresslab.data.erasing import RandomErasing
from stresslab.data.mixing import BatchMix, cutmix_batch, cutmix_box, mixup_batch, one_hot, sample_beta
from stresslab.errors import ConfigError


def _constant_batch(n: int = 8, c: int = 2, h: int = 10, w: int = 12) -> torch.Tensor:
    """Image i is filled with the value i / 100, so every pixel tells which image it came from."""
    return (torch.arange(n, dtype=torch.float32) / 100).view(n, 1, 1, 1).expand(n, c, h, w).clone()


@pytest.mark.parametrize(
    "mix",
    [BatchMix(5, mixup_alpha=0.4), BatchMix(5, cutmix_alpha=1.0, cutmix_prob=1.0),
     BatchMix(5, mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.5)],
)  # fmt: skip
def test_shapes_and_targets_sum_to_one(mix: BatchMix) -> None:
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 5
    for seed in range(5):
        out, t = mix(x, y, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert t.shape == (16, 5) and t.dtype == torch.float32
        torch.testing.assert_close(t.sum(1), torch.ones(16))
        assert bool((t >= 0).all())
        assert out.min() >= 0 and out.max() <= 1


def test_mixup_is_the_convex_combination() -> None:
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3)
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    out, mixed = mixup_batch(x, t, 0.7, perm)
    torch.testing.assert_close(out[0], 0.7 * x[0] + 0.3 * x[1])
    torch.testing.assert_close(mixed[0], torch.tensor([0.7, 0.3, 0.0]))


def test_cutmix_lambda_is_the_exact_share_of_pixels_kept() -> None:
    n, h, w = 8, 10, 12
    x = _constant_batch(n, 2, h, w)
    y = torch.arange(n) % 4
    t = one_hot(y, 4)
    perm = torch.roll(torch.arange(n), 1)  # every image takes from another one
    g = torch.Generator().manual_seed(3)
    for lam in (0.1, 0.5, 0.77, 0.95):
        box = cutmix_box(h, w, lam, g)
        out, mixed, lam_adj = cutmix_batch(x, t, box, perm)
        top, left, bottom, right = box
        area = (bottom - top) * (right - left)
        assert lam_adj == pytest.approx(1 - area / (h * w))
        for i in range(n):
            pasted = (out[i] != x[i]).all(0)  # pixels taken from image perm[i]
            assert int(pasted.sum()) == area
            assert bool((out[i][:, pasted] == x[perm[i]][:, pasted]).all())
            # label weight of the image itself equals the share of its own pixels
            assert float(mixed[i, y[i]]) == pytest.approx(1 - area / (h * w))
            assert float(mixed[i, y[perm[i]]]) == pytest.approx(area / (h * w))


def test_cutmix_box_before_clipping_has_the_paper_area() -> None:
    g = torch.Generator().manual_seed(0)
    top, left, bottom, right = cutmix_box(100, 100, 0.75, g)  # side = 100 * sqrt(0.25) = 50
    assert bottom - top <= 50 and right - left <= 50
    centered = [cutmix_box(100, 100, 0.75, g) for _ in range(50)]
    assert any(b - t == 50 and r - le == 50 for t, le, b, r in centered)


def test_beta_draws_follow_the_beta_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    draws = [sample_beta(0.4, g) for _ in range(2000)]
    assert scipy.stats.kstest(draws, scipy.stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    # the draw is the inverse CDF of the generator's uniform
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    u = float(torch.rand(1, generator=g2))
    assert sample_beta(2.0, g1) == pytest.approx(scipy.stats.beta(2.0, 2.0).ppf(u))


def test_reproducible_with_a_seed() -> None:
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 5
    mix = BatchMix(5, mixup_alpha=0.4, cutmix_alpha=1.0)
    erase = RandomErasing(0.7, value="random")

    def both(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        out, t = mix(erase(x, g), y, g)
        return torch.cat([out.flatten(), t.flatten()])

    assert torch.equal(both(9), both(9))
    assert not torch.equal(both(9), both(10))


def test_training_with_every_regularizer_is_seeded() -> None:
    from stresslab.train.config import TrainConfig
    from stresslab.train.loop import train
    from tests.conftest import TinyNet, make_split

    split = make_split()
    cfg = TrainConfig.model_validate(
        {
            "epochs": 1,
            "batch_size": 16,
            "label_smoothing": 0.1,
            "augment": {"hflip": True, "mixup_alpha": 0.4, "cutmix_alpha": 1.0, "erasing_prob": 0.5},
        }
    )

    def weights() -> torch.Tensor:
        torch.manual_seed(0)
        model = TinyNet(split.info)
        result = train(model, split, cfg, device=torch.device("cpu"), seed=3)
        assert math.isfinite(result.history[0]["train_loss"])
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(), weights())


def test_soft_target_loss_with_smoothing_by_hand() -> None:
    # Two images, K = 3, targets mixed 0.7/0.3, smoothing 0.1: loss = -sum_k t'_k log p_k.
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.3, 0.7]])
    eps, k = 0.1, 3

    def logsm(z: list[float]) -> list[float]:
        m = math.log(sum(math.exp(v) for v in z))
        return [v - m for v in z]

    expected = 0.0
    for z, t in zip(logits.tolist(), targets.tolist(), strict=True):
        ls = logsm(z)
        expected += -sum(((1 - eps) * tk + eps / k) * lk for tk, lk in zip(t, ls, strict=True))
    expected /= 2
    got = F.cross_entropy(logits, targets, label_smoothing=eps)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # unmixed one-hot targets give the same loss as integer labels
    hard = torch.tensor([0, 2])
    torch.testing.assert_close(
        F.cross_entropy(logits, one_hot(hard, 3), label_smoothing=eps),
        F.cross_entropy(logits, hard, label_smoothing=eps),
    )


def test_random_erasing_boxes() -> None:
    x = torch.full((64, 3, 16, 20), 0.5)
    op = RandomErasing(prob=0.5, scale=(0.1, 0.2), ratio=(0.5, 2.0), value=0.0)
    g = torch.Generator().manual_seed(4)
    boxes = op.boxes(64, 16, 20, torch.Generator().manual_seed(4))
    out = op(x, g)
    assert out.shape == x.shape
    erased = (out == 0).all(1)  # (N, H, W)
    for i, (apply, top, left, bh, bw) in enumerate(boxes.tolist()):
        if apply:
            assert int(erased[i].sum()) == bh * bw
            assert bool(erased[i, top : top + bh, left : left + bw].all())
            assert 0.1 * 320 * 0.5 <= bh * bw <= 0.2 * 320 * 1.6  # area share within scale, up to rounding
        else:
            assert not bool(erased[i].any())
    assert 15 < int(boxes[:, 0].sum()) < 49
    assert torch.equal(x, torch.full((64, 3, 16, 20), 0.5))  # input untouched


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cutmix_prob"):
        BatchMix(3, cutmix_alpha=1.0, cutmix_prob=1.5)
    with pytest.raises(ConfigError, match="mixup_alpha"):
        BatchMix(3, mixup_alpha=-1.0)
    with pytest.raises(ConfigError, match="erasing_scale"):
        RandomErasing(0.5, scale=(0.5, 0.1))
    with pytest.raises(ConfigError, match="erasing_value"):
        RandomErasing(0.5, value="noise")
    assert not BatchMix(3).enabled and not RandomErasing().enabled
