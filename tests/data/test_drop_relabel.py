"""data.drop_train_indices and data.relabel: official training indices left out or relabeled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stresslab.data import load_split
from stresslab.errors import ConfigError
from stresslab.runs import config as config_mod
from tests.data_factories import write_npz


def test_drop_and_relabel_keep_the_split_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    write_npz(path, n_train=40, n_test=8)
    base = load_split("npz", root=str(path), val_fraction=0.25)
    drop = [int(base.train_index[0]), int(base.val_index[0])]
    target = int(base.train_index[1])
    old = int(base.train_y[1])
    new_class = (old + 1) % 4
    got = load_split(
        "npz", root=str(path), val_fraction=0.25, drop_train_indices=drop, relabel={target: new_class}
    )
    assert got.train_index.tolist() == base.train_index[1:].tolist()
    assert got.val_index.tolist() == base.val_index[1:].tolist()
    assert int(got.train_y[0]) == new_class  # the relabeled image, now first
    assert torch.equal(got.train_y[1:], base.train_y[2:]) and torch.equal(got.test_y, base.test_y)
    assert "2 training images left out" in got.info.source and "1 training labels changed" in got.info.source


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (
            {"drop_train_indices": [40]},
            "data.drop_train_indices: index 40 is outside the training set (0..39)",
        ),
        ({"relabel": {-1: 0}}, "data.relabel: index -1"),
        ({"relabel": {3: 4}}, "data.relabel: class 4 is not one of the 4 classes"),
    ],
)
def test_bad_indices_and_classes_are_named(tmp_path: Path, kwargs: dict[str, object], needle: str) -> None:
    path = tmp_path / "d.npz"
    write_npz(path, n_train=40, n_test=8)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_split("npz", root=str(path), **kwargs)  # type: ignore[arg-type]


def test_config_fields_validate() -> None:
    cfg = config_mod.validate({"data": {"drop_train_indices": [3, 5], "relabel": {7: 2}}})
    assert cfg.data.drop_train_indices == [3, 5] and cfg.data.relabel == {7: 2}
    with pytest.raises(ConfigError, match="drop_train_indices"):
        config_mod.validate({"data": {"drop_train_indices": "all"}})
