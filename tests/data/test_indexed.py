"""A training set kept as a view of the on-disk image cache: indexing it gives what indexing the
copied tensor gives, and training and the probes that read training images give the same
numbers from the view as from images in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stresslab.data import load_split
from stresslab.data.cache import CacheSettings
from stresslab.data.indexed import IndexedImages, rows
from stresslab.data.stats import channel_stats
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions
from stresslab.train.config import TrainConfig
from stresslab.train.loop import train
from tests.conftest import TinyNet
from tests.data_factories import write_image_folder


def test_indexing_a_view_gives_what_indexing_the_copy_gives() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (20, 3, 4, 5), generator=g, dtype=torch.uint8)
    index = torch.tensor([7, 3, 3, 19, 0, 11, 5])
    view, copy = IndexedImages(base, index), base[index]
    assert len(view) == 7 and view.shape == copy.shape and view.dtype == torch.uint8 and view.ndim == 4
    mask = torch.tensor([True, False, True, True, False, False, True])
    for key in (2, -1, slice(1, 5), slice(None, None, 2), slice(3, 3), torch.tensor([6, 0, 0]), [1, 4], mask):
        assert torch.equal(view[key], copy[key]), key  # type: ignore[index]
    assert torch.equal(view[np.array([2, 5])], copy[[2, 5]])
    sub = view.subset(torch.tensor([4, 1]))
    assert isinstance(sub, IndexedImages) and torch.equal(sub[:], copy[[4, 1]])
    assert isinstance(rows(view, torch.tensor([0])), IndexedImages)
    assert torch.equal(rows(copy, torch.tensor([2, 0])), copy[[2, 0]])  # type: ignore[arg-type]
    assert view.to("cpu") is view and torch.equal(view.materialize(), copy)
    arr = view.numpy()
    assert len(arr) == 7 and np.array_equal(arr[np.array([True] * 3 + [False] * 4)], copy[:3].numpy())
    # A view's rows are copies: writing into them leaves the images alone.
    view[0].fill_(0)
    assert torch.equal(view[0], copy[0])
    assert channel_stats(view, chunk=3) == channel_stats(copy)
    with pytest.raises(ValueError, match="uint8"):
        IndexedImages(base.float(), index)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple:  # type: ignore[type-arg]
    """The same small folder loaded into memory and through the cache (a validation split and a
    training subset, so the kept training images are not the whole set)."""
    tmp = tmp_path_factory.mktemp("indexed")
    write_image_folder(tmp / "data", n_train=24, n_test=4, mixed=False)
    kwargs = {"root": str(tmp / "data"), "val_fraction": 0.25, "train_subset": 40}
    memory = load_split("image_folder", cache=CacheSettings("never"), **kwargs)  # type: ignore[arg-type]
    cached = load_split("image_folder", cache=CacheSettings("always", tmp / "cache"), **kwargs)  # type: ignore[arg-type]
    assert isinstance(cached.train_x, IndexedImages) and isinstance(cached.val_x, IndexedImages)
    assert isinstance(memory.train_x, torch.Tensor) and len(cached.train_x) == 40
    return memory, cached


def test_training_from_the_view_is_bit_equal_to_training_in_memory(splits: tuple) -> None:  # type: ignore[type-arg]
    cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        lr=0.05,
        augment={"crop_padding": 2, "hflip": True},  # type: ignore[arg-type]
    )
    out = []
    for split in splits:
        torch.manual_seed(0)
        model = TinyNet(split.info)
        result = train(model, split, cfg, device=torch.device("cpu"), seed=3)
        timeless = [
            {k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in result.history
        ]
        out.append((model.state_dict(), timeless))
    (w_mem, h_mem), (w_view, h_view) = out
    assert h_mem == h_view and len(h_mem) == 2 and h_mem[-1]["val_acc"] == h_mem[-1]["val_acc"]  # not NaN
    assert all(torch.equal(w_mem[k], w_view[k]) for k in w_mem)


def test_probes_reading_training_images_give_the_same_numbers_from_the_view(splits: tuple) -> None:  # type: ignore[type-arg]
    settings = {
        "ood": {"n_images": 8, "k": 2, "builtin": ["uniform_noise"], "near": []},
        "data_audit": {},
        "label_issues": {"mode": "cross_val", "folds": 2, "epochs": 1},
    }
    metrics = []
    for split in splits:
        torch.manual_seed(0)
        model = TinyNet(split.info).eval()
        preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=16)
        vpreds = Predictions.compute(model, split.val_x, split.val_y, split.val_index, batch_size=16)
        ctx = ProbeContext(
            model,
            split,
            torch.device("cpu"),
            0,
            16,
            preds,
            vpreds,
            sample_seed=42,
            train_config=TrainConfig(epochs=1, batch_size=8),
            model_factory=lambda split=split: TinyNet(split.info),
        )
        found = {"val_logits": vpreds.logits}
        for name, s in settings.items():
            torch.manual_seed(1)
            got = build_probe(name, s).run(ctx).metrics
            found[name] = {k: v for k, v in got.items() if not k.endswith("seconds")}  # wall time
        metrics.append(found)
    mem, view = metrics
    assert torch.equal(mem.pop("val_logits"), view.pop("val_logits"))
    assert mem == view and mem["ood"] and mem["data_audit"] and mem["label_issues"]
