"""Noisy linear imputation and localisation metrics against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from stresslab.metrics.imputation import linear_imputation, noisy_linear_imputation
from stresslab.metrics.localisation import box_masks, relevance_mass_accuracy, relevance_rank_accuracy


def test_one_pixel_in_a_constant_image_takes_the_constant() -> None:
    x = torch.full((1, 2, 5, 5), 0.3)
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True
    out = linear_imputation(x, removed)
    assert torch.allclose(out, x, atol=1e-7)


def test_one_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    x = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5) / 25
    x[0, 0, 1, 1] = 0.9  # a corner neighbour (weight 1/12)
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True
    # edges (1/6): (1,2), (3,2), (2,1), (2,3); corners (1/12): (1,1), (1,3), (3,1), (3,3)
    edges = (7 + 17 + 11 + 13) / 25
    corners = 0.9 + (8 + 16 + 18) / 25
    expected = (edges / 6 + corners / 12) / 1.0
    out = linear_imputation(x, removed)
    assert out[0, 0, 2, 2].item() == pytest.approx(expected, abs=1e-6)
    keep = ~removed[0]
    assert torch.equal(out[0, 0][keep], x[0, 0][keep])


def test_a_linear_image_is_imputed_exactly_for_a_block() -> None:
    """A linear ramp satisfies the neighbour-mean equation inside the image (the weights are
    symmetric), so any removed region with known pixels around it is recovered exactly."""
    rows = torch.arange(8, dtype=torch.float64)[:, None]
    cols = torch.arange(8, dtype=torch.float64)[None, :]
    x = ((0.02 * rows + 0.05 * cols + 0.1).float())[None, None]
    removed = torch.zeros(1, 8, 8, dtype=torch.bool)
    removed[0, 2:5, 3:6] = True
    assert torch.allclose(linear_imputation(x, removed), x, atol=1e-6)


def test_noise_has_the_stated_spread_and_touches_only_removed_pixels() -> None:
    x = torch.full((4, 1, 16, 16), 0.5)
    removed = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.5
    out = noisy_linear_imputation(x, removed, noise=0.01, generator=torch.Generator().manual_seed(1))
    diff = (out - x)[:, 0]
    assert torch.equal(diff[~removed], torch.zeros(int((~removed).sum())))
    assert diff[removed].std().item() == pytest.approx(0.01, rel=0.1)


def test_an_image_with_every_pixel_removed_is_refused() -> None:
    with pytest.raises(ValueError, match="image 1 has every pixel removed"):
        linear_imputation(torch.zeros(2, 1, 3, 3), torch.tensor([False, True])[:, None, None].expand(2, 3, 3))


def test_mass_and_rank_accuracy_on_a_known_mask() -> None:
    maps = torch.tensor([[[4.0, 1.0], [0.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    tied = torch.tensor([[[2.0, 2.0], [2.0, 0.0]]])
    masks = torch.tensor(
        [[[True, False], [False, False]], [[True, True], [False, False]], [[True, False], [False, False]]]
    )
    mass = relevance_mass_accuracy(maps, masks)
    assert mass[0].item() == pytest.approx(0.4)  # 4 of 10
    assert mass[1].item() == pytest.approx(0.5)  # a uniform map scores the area share
    assert math.isnan(mass[2].item())  # no mass
    rank = relevance_rank_accuracy(maps, masks)
    assert rank[0].item() == 0.0  # top-1 pixel is (1, 1), outside
    assert math.isnan(rank[1].item()) and math.isnan(rank[2].item())  # constant maps rank nothing
    # ties in raster order: the top two are (0, 0) and (0, 1), one of them in the mask (0, 0), (1, 1)
    diagonal = torch.tensor([[[True, False], [False, True]]])
    assert relevance_rank_accuracy(tied, diagonal).item() == 0.5
    empty = relevance_rank_accuracy(maps[:1], torch.zeros(1, 2, 2, dtype=torch.bool))
    assert math.isnan(empty.item())


def test_rank_accuracy_equals_a_stable_sort_with_many_ties() -> None:
    """The threshold form equals the definition: sort each map descending, ties in raster
    order, and count the mask's pixels among the first K (K = the mask's size)."""
    g = torch.Generator().manual_seed(5)
    maps = torch.randint(0, 4, (200, 5, 6), generator=g).float()  # four values: ties everywhere
    masks = torch.rand(200, 5, 6, generator=g) < torch.rand(200, 1, 1, generator=g)
    got = relevance_rank_accuracy(maps, masks)
    for i in range(200):
        a, s = maps[i].flatten().tolist(), masks[i].flatten().tolist()
        k = sum(s)
        if k == 0 or max(a) == min(a):
            assert math.isnan(got[i].item())
            continue
        order = sorted(range(len(a)), key=lambda j: -a[j])  # Python's sort is stable
        assert got[i].item() == sum(s[j] for j in order[:k]) / k
    half = relevance_rank_accuracy(maps.to(torch.bfloat16), masks)
    assert torch.equal(half.isnan(), got.isnan()) and torch.equal(half.nan_to_num(), got.nan_to_num())


def test_box_masks_clip_to_the_image() -> None:
    m = box_masks((2, 4, 4), [(0, 0, 2, 2), (3, 3, 4, 4)])
    assert m[0].sum() == 4 and m[0, :2, :2].all()
    assert m[1].sum() == 1 and m[1, 3, 3]
    with pytest.raises(ValueError, match="no area"):
        box_masks((1, 4, 4), [(0, 0, 0, 2)])


def test_imputation_in_groups_equals_one_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    # The systems are independent per image: solving each image alone (a band budget below one
    # image's unknowns) gives the values of the one block-diagonal solve.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 12, 10, generator=g)
    removed = torch.rand(6, 12, 10, generator=g) < torch.linspace(0.1, 0.9, 6)[:, None, None]
    whole = linear_imputation(x, removed)
    monkeypatch.setattr("stresslab.metrics.imputation.BAND_BYTES", 1)
    alone = linear_imputation(x, removed)
    torch.testing.assert_close(alone, whole, atol=1e-6, rtol=0)
    assert not torch.equal(whole, x)
