"""The parts every probe shares: one sampler, one confusion matrix, typed offers, headlines."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from stresslab.errors import StresslabError
from stresslab.metrics.confusion import confusion_counts, row_normalized, top_confused_pairs
from stresslab.probes.base import Offer, ProbeContext, ProbeResult
from stresslab.probes.predictions import Predictions, _Outputs
from stresslab.report.render import headline_cards
from tests.conftest import TinyNet, make_split


def test_confusion_counts_match_sklearn_and_a_hand_case() -> None:
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    p = torch.tensor([0, 1, 1, 0, 2, 1])
    cm = confusion_counts(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 1]]
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=g)
    p = torch.randint(0, 5, (200,), generator=g)
    assert np.array_equal(confusion_counts(y, p, 5), confusion_matrix(y, p, labels=range(5)))


def test_row_normalized_and_top_pairs() -> None:
    cm = np.array([[5, 3, 0], [0, 0, 0], [1, 4, 2]])
    norm = row_normalized(cm)
    assert np.allclose(norm[0], [5 / 8, 3 / 8, 0]) and np.allclose(norm[1], 0)
    assert top_confused_pairs(cm, 2) == [(2, 1), (0, 1)]
    assert top_confused_pairs(cm, 10) == [(2, 1), (0, 1), (2, 0)]  # zero cells left out


def _ctx(n_test: int = 60, seed: int = 0, sample_seed: int = 42) -> ProbeContext:
    split = make_split(n_test=n_test)
    model = TinyNet(split.info)
    preds = Predictions.compute(
        model, split.test_x, split.test_y, split.test_index, device=torch.device("cpu")
    )
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=seed,
        batch_size=64,
        predictions=preds,
        val_predictions=preds,
        sample_seed=sample_seed,
    )


def test_sample_is_shared_stratified_nested_and_independent_of_the_training_seed() -> None:
    a, b = _ctx(seed=0), _ctx(seed=7)
    s30 = a.sample(30, "adversarial")
    assert torch.equal(s30, a.sample(30, "corruption"))  # same size, same images
    assert torch.equal(s30, b.sample(30, "adversarial"))  # another training seed, same images
    assert torch.equal(s30, s30.sort().values)
    counts = torch.bincount(a.predictions.labels[s30], minlength=3)
    assert counts.tolist() == [10, 10, 10]
    assert set(a.sample(15, "x").tolist()) <= set(s30.tolist())
    assert torch.equal(a.sample(None, "all"), torch.arange(60))
    assert torch.equal(a.sample(1000, "all"), torch.arange(60))
    assert a.samples == {"adversarial": 30, "corruption": 30, "x": 15, "all": 60}
    assert not torch.equal(s30, _ctx(sample_seed=1).sample(30, "adversarial"))


@dataclass
class _Cases(Offer):
    positions: list[int]


@dataclass
class _Other(Offer):
    n: int


def test_offer_is_typed() -> None:
    ctx = _ctx()
    assert ctx.offer("failures", _Cases) is None
    ctx.results["failures"] = ProbeResult(offer=_Cases([1, 2]))
    got = ctx.offer("failures", _Cases)
    assert got is not None and got.positions == [1, 2]
    try:
        ctx.offer("failures", _Other)
    except TypeError as e:
        assert "_Cases" in str(e)
    else:
        raise AssertionError("a wrong offer type must raise")


def test_headline_cards_fill_labels_from_settings_and_skip_missing_metrics() -> None:
    results = {
        "calibration": {
            "headlines": [{"metric": "ece", "label": "ECE ({n_bins} bins)", "percent": False}],
            "data": {"settings": {"n_bins": 20}},
        },
        "evaluation": {
            "headlines": [
                {"metric": "accuracy", "label": "test accuracy", "percent": True},
                {"metric": "renamed", "label": "gone", "percent": False},
            ],
            "data": {},
        },
    }
    cards = headline_cards(results, {"calibration.ece": 0.0123, "evaluation.accuracy": 0.9})
    assert cards == [
        {"label": "ECE (20 bins)", "value": "0.0123"},
        {"label": "test accuracy", "value": "90.00%"},
    ]
    # A placeholder the saved settings do not fill is an error naming probe and placeholder.
    results["calibration"]["data"] = {"n_bins": 20}  # settings not saved where the label reads them
    with pytest.raises(StresslabError, match=r"probe calibration: .*placeholder \{n_bins\}.*holds: nothing"):
        headline_cards(results, {"calibration.ece": 0.0123})


def test_failures_offers_typed_cases_that_survive_a_save_and_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from stresslab.probes import build_probe
    from stresslab.probes.failures import FailureCases
    from stresslab.runs.directory import RunDir
    from stresslab.runs.storage import load_result, save_result

    ctx = _ctx()
    res = build_probe("failures", {"threshold": 0.34}).run(ctx)
    cases = res.offer
    assert isinstance(cases, FailureCases)
    wrong = set(torch.nonzero(~ctx.predictions.correct).flatten().tolist())
    assert set(cases.errors) == wrong
    conf = ctx.predictions.confidence
    assert all(conf[a] >= conf[b] for a, b in zip(cases.errors, cases.errors[1:], strict=False))
    assert set(cases.high_confidence) == {i for i in wrong if conf[i] >= 0.34}
    run = RunDir.create(tmp_path / "run")
    save_result(run, "failures", res, 0.0)
    back = load_result(run.result_json("failures"))
    assert back.offer == cases


def test_one_device_picker() -> None:
    import torch
    from torch import nn

    from stresslab.devices import model_device, pick_device
    from stresslab.errors import ConfigError

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device(None, nn.Linear(2, 2)) == torch.device("cpu")
    assert pick_device(None) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters or buffers
    with pytest.raises(ConfigError, match="not a device torch knows"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")


def test_outputs_are_written_in_order_and_the_batches_dropped() -> None:
    lg = [torch.randn(3, 4), torch.randn(0, 4), torch.randn(5, 4), torch.randn(2, 4)]
    ft = [torch.randn(len(t), 6) for t in lg]
    parts = [(lg[:2], ft[:2]), (lg[2:3], ft[2:3])]
    out = _Outputs(10)
    out.take(parts)
    out.take([(lg[3:], ft[3:])])
    assert parts == [] and out.logits is not None and out.features is not None
    assert torch.equal(out.logits, torch.cat(lg)) and torch.equal(out.features, torch.cat(ft))
    bare = _Outputs(3)
    bare.take([([torch.ones(3, 2)], [])])  # a model without features()
    assert bare.features is None and bare.logits is not None and bare.logits.shape == (3, 2)


def test_forward_passes_are_bounded_by_pixels() -> None:
    """One pass over 1,024 large images holds gigabytes of activations: the probes' forward
    passes shrink with the pixels (the run's batch at 28 px, 87 images at 96 px)."""
    from stresslab.devices import forward_batch
    from stresslab.probes.base import batched_forward

    assert forward_batch(1024, 28, 28) == 1024 and forward_batch(1024, 96, 96) == 87
    assert forward_batch(100, 96, 96) == 87 and forward_batch(64, 96, 96) == 64
    assert forward_batch(0, 8, 8) == 1 and forward_batch(1024, 4000, 4000) == 1
    seen: list[int] = []

    class Recording(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(len(x))
            return x.mean(dim=(2, 3)).repeat(1, 2)

    out = batched_forward(Recording(), torch.zeros(200, 1, 96, 96), 1024, torch.device("cpu"))
    assert seen == [87, 87, 26] and out.shape == (200, 2)
    seen.clear()  # the shared predictions too, uint8 images as a run holds them
    x = torch.zeros(200, 1, 96, 96, dtype=torch.uint8)
    p = Predictions.compute(Recording(), x, torch.zeros(200), torch.arange(200), batch_size=1024)
    assert seen == [87, 87, 26] and p.logits.shape == (200, 2)
    seen.clear()
    small = torch.zeros(300, 1, 28, 28)
    Predictions.compute(Recording(), small, torch.zeros(300), torch.arange(300), batch_size=128)
    assert seen == [128, 128, 44]  # small images keep the run's batch
