"""Shards: boundaries on batch multiples, keyed draws, and per-image work that gives the same
numbers however it is split (predictions, corruption, adversarial and explain probes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from stresslab.attributions.base import ATTRIBUTIONS
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext, ProbeResult
from stresslab.probes.explain.cases import sample_cases
from stresslab.probes.explain.compute import Explained, compute, prepare_methods
from stresslab.probes.explain.settings import ExplainSettings
from stresslab.probes.predictions import Predictions
from stresslab.shards import LocalShards, ShardExecutor, keyed_generator, shard_bounds
from tests.conftest import TinyNet, make_split


def test_shard_bounds_by_hand() -> None:
    # 10 items, batches of 4: blocks [0,4) [4,8) [8,10)
    assert shard_bounds(10, 3, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(10, 2, 4) == [(0, 8), (8, 10)]
    assert shard_bounds(10, 5, 4) == [(0, 4), (4, 8), (8, 10)]  # no more shards than batches
    assert shard_bounds(7, 2, 1) == [(0, 4), (4, 7)]
    assert shard_bounds(10, 1, 4) == [(0, 10)]
    assert shard_bounds(0, 3, 4) == []


def test_keyed_generator_depends_on_the_keys_only() -> None:
    a = torch.rand(5, generator=keyed_generator(0, "attack", 12))
    assert torch.equal(a, torch.rand(5, generator=keyed_generator(0, "attack", 12)))
    assert not torch.equal(a, torch.rand(5, generator=keyed_generator(0, "attack", 16)))
    assert not torch.equal(a, torch.rand(5, generator=keyed_generator(1, "attack", 12)))


def test_local_shards_cut_and_merge_in_order() -> None:
    seen: list[tuple[int, int]] = []

    def fn(model: Any, data: dict[str, torch.Tensor], advance: Any) -> torch.Tensor:
        seen.append((int(data["i"][0]), len(data["i"])))
        advance(1)
        return data["i"] * 2

    steps: list[int] = []
    out = LocalShards(3).map(fn, torch.nn.Identity(), {"i": torch.arange(10)}, align=4, advance=steps.append)
    assert seen == [(0, 4), (4, 4), (8, 2)] and steps == [1, 1, 1]
    assert torch.equal(torch.cat(out), torch.arange(10) * 2)
    with pytest.raises(ValueError, match="first dimension"):
        LocalShards(2).map(fn, torch.nn.Identity(), {"i": torch.arange(3), "j": torch.arange(4)})


def _ctx(shards: ShardExecutor, model: torch.nn.Module | None = None) -> ProbeContext:
    split = make_split(n_train=8, n_val=8, n_test=60, seed=3)
    torch.manual_seed(0)
    model = model or TinyNet(split.info)
    bs = 16
    preds = Predictions.compute(
        model, split.test_x, split.test_y, split.test_index, batch_size=bs, shards=shards
    )
    vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=bs)
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=bs,
        predictions=preds,
        val_predictions=vpreds,
        shards=shards,
    )


PROBES = {
    "corruption": {
        "corruptions": ["gaussian_noise", "snow"],  # both draw random numbers
        "severities": [3],
        "max_images": 0,
        "resolution": None,
    },
    "adversarial": {
        "attacks": {"pgd_linf": {"steps": 2}},  # random starts
        "epsilons": [0.0, 0.1],
        "max_images": 40,
        "convergence_check": False,
    },
    # Its attribution maps (occlusion here, the fallback on any model) and transplant tests.
    "shortcut": {"method": "occlusion", "max_images": 40, "n_transplant": 20},
}


def _numbers(res: ProbeResult) -> str:
    return json.dumps({"metrics": res.metrics, "data": res.data}, sort_keys=True, default=str)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_probe_numbers_do_not_depend_on_the_split(probe: str) -> None:
    one, three = _ctx(LocalShards(1)), _ctx(LocalShards(3))
    assert torch.equal(one.predictions.logits, three.predictions.logits)
    assert torch.equal(one.predictions.embeddings, three.predictions.embeddings)
    a = build_probe(probe, PROBES[probe]).run(one)
    b = build_probe(probe, PROBES[probe]).run(three)
    assert a.metrics and _numbers(a) == _numbers(b)


def test_ray_tasks_rebuild_the_memory_format_training_left() -> None:
    from stresslab.shards import _uses_channels_last

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3))
    assert not _uses_channels_last(model)
    assert _uses_channels_last(model.to(memory_format=torch.channels_last))


def _transplant(shards: ShardExecutor, model: torch.nn.Module) -> tuple[Any, torch.Tensor]:
    from stresslab.data.base import to_float
    from stresslab.probes.shortcut.regions import Box
    from stresslab.probes.shortcut.transplant import transplant_test

    split = make_split(n_test=60, seed=4)
    x = to_float(split.test_x)
    recipients, donors = x[split.test_y != 0], x[split.test_y == 0][:6]
    g = torch.Generator().manual_seed(5)
    return transplant_test(
        model, recipients, donors, Box(0, 0, 3, 3), 0, generator=g, batch_size=8, shards=shards
    )


def test_transplant_numbers_do_not_depend_on_the_split() -> None:
    torch.manual_seed(0)
    model = TinyNet(make_split().info)
    (one, donors_one), (three, donors_three) = (
        _transplant(LocalShards(1), model),
        _transplant(LocalShards(3), model),
    )
    assert one.region.n == 40 and torch.equal(donors_one, donors_three)
    assert torch.equal(one.preds, three.preds) and (one.region, one.control) == (three.region, three.control)
    assert one.p_value == three.p_value


def test_a_ray_worker_rebuilds_the_model_once_per_weights_version(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from stresslab import shards

    built: list[int] = []

    def factory() -> torch.nn.Module:
        built.append(1)
        return torch.nn.Linear(2, 2)

    class Ref:
        def __init__(self, key: str) -> None:
            self.key = key

        def hex(self) -> str:
            return self.key

    weights = {"v1": torch.nn.Linear(2, 2).state_dict(), "v2": torch.nn.Linear(2, 2).state_dict()}
    monkeypatch.setattr(ray, "get", lambda ref: {"factory": factory, "state": weights[ref.key],
                                                  "module": None, "channels_last": False})  # fmt: skip
    monkeypatch.setattr(shards, "_WORKER_MODEL", {})
    first = shards._worker_model(Ref("v1"))
    first.train()  # a task that left the mode changed: the next one still gets eval mode
    again = shards._worker_model(Ref("v1"))
    assert again is first and not again.training and len(built) == 1
    other = shards._worker_model(Ref("v2"))
    assert other is not first and len(built) == 2
    assert torch.equal(other.weight, weights["v2"]["weight"])
    assert not any(p.requires_grad for p in other.parameters())


def _explain(ctx: ProbeContext) -> Explained:
    """The explain probe's maps and numbers of 40 sampled test images (3 batches of 16)."""
    listed = {
        "gradcam": ATTRIBUTIONS.build("gradcam"),  # with a true-class map
        "smoothgrad": ATTRIBUTIONS.build("smoothgrad", samples=4),  # draws noise
        "occlusion": ATTRIBUTIONS.build("occlusion", window=4, stride=2),  # confidence maps
    }
    methods, _ = prepare_methods(ctx, listed)
    return compute(ctx, sample_cases(ctx, 40), methods, ExplainSettings(curve_steps=4, random_maps=2))


def explained_tensors(explained: Explained) -> dict[str, torch.Tensor]:
    """Every per-image number of an ``Explained`` record, by name."""
    out = {
        "images": explained.images,
        "random.deletion": explained.random.deletion,
        "random.insertion": explained.random.insertion,
    }
    for name, r in explained.methods.items():
        fields = {
            "maps": r.maps,
            "deletion": r.curves.deletion,
            "insertion": r.curves.insertion,
            "spearman": r.spearman,
            "true_maps": r.true_maps,
            "true_confidence": r.true_confidence,
            "grid": r.grid,
        }
        out.update({f"{name}.{k}": v for k, v in fields.items() if v is not None})
    return out


def test_explain_numbers_do_not_depend_on_the_split() -> None:
    one, three = _ctx(LocalShards(1)), _ctx(LocalShards(3))
    a, b = explained_tensors(_explain(one)), explained_tensors(_explain(three))
    assert sorted(a) == sorted(b) and {"gradcam.true_maps", "occlusion.grid"} <= set(a)
    for key, value in a.items():  # bit-equal (NaN where a map is constant, in both)
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    # 40 images in batches of 16: the 3 shards hold 16, 16 and 8 of them.
    assert a["smoothgrad.maps"].shape == (40, 8, 8) and a["random.deletion"].shape == (40, 5)
    # Both curves start (deletion) and end (insertion) at the predicted class's probability
    # of the whole image; the curves of random maps too.
    probs = torch.softmax(one.model(a["images"]), 1).max(1).values
    for name in ("gradcam", "smoothgrad", "occlusion", "random"):
        assert torch.allclose(a[f"{name}.deletion"][:, 0], probs, atol=1e-6)
        assert torch.allclose(a[f"{name}.insertion"][:, -1], probs, atol=1e-6)
    rho = a["gradcam.spearman"]
    assert bool(((rho[rho.isfinite()] >= -1) & (rho[rho.isfinite()] <= 1)).all())


def further_tensors(ctx: ProbeContext, explained: Explained) -> dict[str, torch.Tensor]:
    """ROAD and max-sensitivity of ``explained``'s 40 images (every one), by name."""
    from stresslab.probes.explain.further_tests import further_tests

    s = ExplainSettings(road_images=40, sensitivity_images=40, sensitivity_samples=2)
    tests = further_tests(ctx, explained, s)
    out = {"random.morf": tests.random_road.morf, "random.lerf": tests.random_road.lerf}
    for name, t in tests.methods.items():
        out.update(
            {f"{name}.morf": t.road.morf, f"{name}.lerf": t.road.lerf, f"{name}.sensitivity": t.sensitivity}
        )
    return out


def test_further_tests_do_not_depend_on_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import stresslab.probes.explain.further_tests as ft

    # ROAD chunks of 16 images of 8x8 (the default budget holds all 40 in one): 3 shards
    # of 16, 16 and 8; max-sensitivity chunks of 8, shards on multiples of 8.
    monkeypatch.setattr(ft, "IMPUTE_PIXELS", 16 * 64)
    one, three = _ctx(LocalShards(1)), _ctx(LocalShards(3))
    a, b = further_tensors(one, _explain(one)), further_tensors(three, _explain(three))
    assert sorted(a) == sorted(b) and a["occlusion.morf"].shape == (40, 5)
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    # Occlusion costs 9 passes a map: max-sensitivity on 40 // 9 = 4, at least 8 images.
    assert len(a["occlusion.sensitivity"]) == 8 and len(a["gradcam.sensitivity"]) == 40
    assert not torch.equal(a["gradcam.morf"], a["random.morf"])
