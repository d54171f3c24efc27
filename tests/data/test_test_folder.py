"""A folder of test images alone, its classes matched to a model's class names by name, and
the resize-and-centre-crop preprocessing of ImageNet-style models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stresslab.data import load_split
from stresslab.data.convert import resize_center_crop
from stresslab.data.loaders.image_folder import is_image_folder
from stresslab.errors import DataError

MODEL_CLASSES = ["dog", "t-shirt/top", "cat", "bird"]


def _write(folder: Path, classes: dict[str, int], sizes: tuple[tuple[int, int], ...]) -> None:
    """``folder/<class>/<i>.png``: class folder -> a grey level, written into every pixel of
    its images, so a loaded image's value says which folder it came from; sizes (W, H) cycle."""
    for cls, level in classes.items():
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            w, h = sizes[i % len(sizes)]
            Image.fromarray(np.full((h, w, 3), level, dtype=np.uint8)).save(folder / cls / f"{i}.png")


@pytest.mark.parametrize("inner", ["test", ""])
def test_a_test_folder_alone_gives_the_models_class_indices(tmp_path: Path, inner: str) -> None:
    # Folders in another order than the model's classes, one named by the '/' -> '_' rule,
    # images of mixed sizes, and one class of the model absent.
    _write(tmp_path / inner, {"t-shirt_top": 40, "cat": 120, "dog": 200}, ((20, 12), (9, 30), (16, 16)))
    split = load_split("image_folder", root=str(tmp_path), class_names=MODEL_CLASSES, image_size=8)
    assert split.info.class_names == tuple(MODEL_CLASSES)
    assert len(split.train_y) == 0 and len(split.val_y) == 0
    assert split.train_x.shape == (0, 3, 8, 8) and split.test_x.shape == (9, 3, 8, 8)
    level_of = {0: 200, 1: 40, 2: 120}  # the model's index -> the grey level of its folder
    for x, y in zip(split.test_x, split.test_y, strict=True):
        assert int(x.float().mean().round()) == level_of[int(y)]
    assert sorted(set(split.test_y.tolist())) == [0, 1, 2]  # "bird" (3) has no folder
    assert split.warnings == []  # no training set: nothing to compare the test classes with
    mean = split.info.mean[0]  # the test images' own statistics
    assert mean == pytest.approx((200 + 40 + 120) / 3 / 255, abs=1e-6)


def test_without_class_names_a_test_folder_uses_its_sorted_folders(tmp_path: Path) -> None:
    _write(tmp_path / "test", {"b": 10, "a": 90}, ((8, 8),))
    split = load_split("image_folder", root=str(tmp_path))
    assert split.info.class_names == ("a", "b")
    assert len(split.train_y) == 0 and split.test_y.tolist() == [0, 0, 0, 1, 1, 1]


def test_unknown_classes_are_an_error_listing_both_sets(tmp_path: Path) -> None:
    _write(tmp_path / "test", {"cat": 10, "zebra": 50}, ((8, 8),))
    with pytest.raises(DataError) as err:
        load_split("image_folder", root=str(tmp_path), class_names=MODEL_CLASSES)
    msg = str(err.value)
    assert str(tmp_path / "test") in msg and "1 of its 2 class folders" in msg
    assert "folders not matched: 'zebra'" in msg
    assert "'dog', 't-shirt/top', 'cat', 'bird'" in msg


def test_a_folder_matching_no_class_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, {"x": 10, "y": 50}, ((8, 8),))
    with pytest.raises(DataError, match="none of its class folders matches"):
        load_split("image_folder", root=str(tmp_path), class_names=MODEL_CLASSES)


def test_a_folder_name_that_fits_two_classes_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "test", {"a_b_c": 10}, ((8, 8),))
    with pytest.raises(DataError, match="more than one class: 'a/b_c', 'a_b/c'"):
        load_split("image_folder", root=str(tmp_path), class_names=["a/b_c", "a_b/c"])
    # A class named exactly like the folder wins over the '/' -> '_' rule.
    split = load_split("image_folder", root=str(tmp_path), class_names=["a/b_c", "a_b/c", "a_b_c"])
    assert split.test_y.tolist() == [2, 2, 2]


def test_training_folders_are_matched_by_name_too(tmp_path: Path) -> None:
    _write(tmp_path / "train", {"cat": 10, "dog": 50}, ((8, 8),))
    _write(tmp_path / "test", {"dog": 50}, ((8, 8),))
    split = load_split("image_folder", root=str(tmp_path), class_names=MODEL_CLASSES, val_fraction=0.0)
    assert sorted(set(split.train_y.tolist())) == [0, 2] and split.test_y.tolist() == [0, 0, 0]


def test_is_image_folder(tmp_path: Path) -> None:
    _write(tmp_path / "photos", {"cat": 10}, ((8, 8),))
    (tmp_path / "idx" / "raw").mkdir(parents=True)
    (tmp_path / "idx" / "raw" / "train-images.gz").write_bytes(b"x")
    assert is_image_folder(tmp_path / "photos")
    assert not is_image_folder(tmp_path / "idx") and not is_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("wh", [(40, 20), (23, 37), (64, 64), (10, 9)])
def test_resize_center_crop_matches_torchvision(wh: tuple[int, int]) -> None:
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import InterpolationMode

    rng = np.random.default_rng(sum(wh))
    img = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    size, crop_pct = 12, 0.75  # shorter side 16, then the centre 12 x 12
    ours = np.asarray(resize_center_crop(img, (size, size), crop_pct))
    reference = v2.Compose([v2.Resize(16, interpolation=InterpolationMode.BICUBIC), v2.CenterCrop(size)])
    theirs = np.asarray(reference(img))
    assert ours.shape == (size, size, 3)
    np.testing.assert_array_equal(ours, theirs)


def test_crop_pct_keeps_the_aspect_ratio_on_load(tmp_path: Path) -> None:
    # A 32 x 16 image whose left and right quarters are black: resizing the shorter side to
    # 8 / 0.5 = 16 keeps it as it is, and the centre 8 x 8 is all white; a plain resize would
    # squeeze the black quarters in.
    arr = np.full((16, 32, 3), 255, dtype=np.uint8)
    arr[:, :8] = arr[:, 24:] = 0
    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(arr).save(tmp_path / "test" / "a" / "0.png")
    cropped = load_split("image_folder", root=str(tmp_path), image_size=8, crop_pct=0.5).test_x
    squeezed = load_split("image_folder", root=str(tmp_path), image_size=8).test_x
    assert torch.equal(cropped, torch.full((1, 3, 8, 8), 255, dtype=torch.uint8))
    assert int(squeezed.min()) == 0
