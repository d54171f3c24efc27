"""ROAD, localisation and max-sensitivity against Quantus (Hedstrom et al., "Quantus: An
Explainable AI Toolkit for Responsible Evaluation of Neural Network Explanations", JMLR 2023)
on the same tiny model, images and maps. Quantus is a benchmark extra (``pip install
quantus==0.6.0``); these tests are skipped without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from stresslab.attributions import Saliency
from stresslab.metrics.imputation import linear_imputation
from stresslab.metrics.localisation import relevance_mass_accuracy, relevance_rank_accuracy
from stresslab.probes.explain.road import road_curves
from stresslab.probes.explain.sensitivity import max_sensitivity, uniform_noise

quantus = pytest.importorskip("quantus")
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation  # noqa: E402

torch.set_num_threads(1)
PERCENTAGES = [10.0, 30.0, 50.0, 70.0, 90.0]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(nn.functional.avg_pool2d(self.conv(x), 3)).flatten(1))


@pytest.fixture
def setup() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    model = Tiny().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 1, 12, 12, generator=g)
    maps = torch.rand(24, 12, 12, generator=g)  # continuous values: no ties in any order
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, maps, target


def test_imputation_equals_quantus() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 9, 7, generator=g)
    removed = torch.rand(3, 9, 7, generator=g) < 0.6
    ours = linear_imputation(x, removed).double().numpy()
    for i in range(3):
        ref = quantus_imputation(x[i].double().numpy(), np.flatnonzero(removed[i].numpy()), noise=0.0)
        np.testing.assert_allclose(ours[i], ref, atol=1e-6)  # ours is float32


def _quantus_road(model: nn.Module, x: Tensor, a: Tensor, y: Tensor, noise: float) -> np.ndarray:
    metric = quantus.ROAD(percentages=PERCENTAGES, noise=noise, disable_warnings=True)
    out = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(), device="cpu")
    return np.array([out[p] for p in PERCENTAGES])


def test_road_without_noise_equals_quantus_in_both_orders(setup) -> None:  # type: ignore[no-untyped-def]
    model, x, maps, target = setup
    ours = road_curves(model, x, maps, target, percentages=PERCENTAGES, noise=0.0)
    # Quantus's ROAD removes the most relevant first; least relevant first is MoRF of 1 - maps.
    np.testing.assert_allclose(
        ours.morf.mean(0).numpy(), _quantus_road(model, x, maps, target, 0.0), atol=1e-9
    )
    np.testing.assert_allclose(
        ours.lerf.mean(0).numpy(), _quantus_road(model, x, 1 - maps, target, 0.0), atol=1e-9
    )


def test_road_with_noise_agrees_with_quantus_on_average(setup) -> None:  # type: ignore[no-untyped-def]
    """With noise (std 0.01) the draws differ (Quantus uses NumPy's global generator), so
    the curves are compared as means over the 24 x 5 (image, percentage) cells: they may
    differ only where a draw flips a prediction, which the noiseless curves bound."""
    model, x, maps, target = setup
    np.random.seed(0)
    ref = _quantus_road(model, x, maps, target, 0.01)
    ours = road_curves(
        model, x, maps, target, percentages=PERCENTAGES, generator=torch.Generator().manual_seed(0)
    )
    assert abs(float(ours.morf.mean()) - float(ref.mean())) <= 0.05


def test_localisation_equals_quantus(setup) -> None:  # type: ignore[no-untyped-def]
    model, x, maps, target = setup
    masks = x[:, 0] > 0.5
    signed = maps - 0.3
    a, s = signed.clamp(min=0)[:, None].numpy(), masks[:, None].numpy()
    kw = {"model": model, "x_batch": x.numpy(), "y_batch": target.numpy(), "a_batch": a, "s_batch": s}
    mass = quantus.RelevanceMassAccuracy(disable_warnings=True)(**kw)
    np.testing.assert_allclose(relevance_mass_accuracy(signed.clamp(min=0), masks).numpy(), mass, atol=1e-6)
    kw["a_batch"] = maps[:, None].numpy()
    rank = quantus.RelevanceRankAccuracy(disable_warnings=True)(**kw)
    np.testing.assert_allclose(relevance_rank_accuracy(maps, masks).numpy(), rank, atol=1e-9)


def test_max_sensitivity_equals_quantus_on_the_same_noise(setup) -> None:  # type: ignore[no-untyped-def]
    """The same noise in both: Quantus's perturbation function is replaced by one that adds
    our draws (``uniform_noise`` from the same seed, clipped to [0, 1] as ours)."""
    model, x, _, target = setup
    method = Saliency()
    maps = method.attribute(model, x, target)
    samples, radius = 4, 0.05
    noise = uniform_noise(tuple(x.shape), samples, radius, torch.Generator().manual_seed(3))
    step = iter(range(samples))

    def perturb(arr: np.ndarray, **_: object) -> np.ndarray:
        d = noise[next(step)].reshape(arr.shape[0], -1).numpy()
        return np.clip(arr + d, 0.0, 1.0)

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        return method.attribute(model, torch.as_tensor(inputs).float(), t)[:, None].numpy()

    metric = quantus.MaxSensitivity(nr_samples=samples, perturb_func=perturb, disable_warnings=True)
    ref = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=target.numpy(),
        a_batch=maps[:, None].numpy(),
        explain_func=explain,
        device="cpu",
    )
    ours = max_sensitivity(
        method,
        model,
        x,
        target,
        maps,
        radius=radius,
        samples=samples,
        generator=torch.Generator().manual_seed(3),
    )
    np.testing.assert_allclose(ours.numpy(), np.asarray(ref), rtol=1e-5)
