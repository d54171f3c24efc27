"""Dataset loaders, file formats and load_split, on tiny files written in the real formats."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from stresslab.data import DATASETS, channel_stats, convert_images, load_split, stratified_sample
from stresslab.data import split as split_module
from stresslab.data.coverage import MIN_TRAIN_IMAGES_PER_CLASS, coverage_warnings
from stresslab.data.formats import read_idx, read_image_file, safe_unpickle
from stresslab.data.loaders import base as loader_base
from stresslab.data.loaders import cifar, fashion_mnist, stl10, svhn
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.errors import ConfigError, DataError
from stresslab.registry import Registry
from tests.data_factories import (
    FASHION_CLASSES,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_idx,
    write_image_folder,
    write_npz,
    write_stl10,
    write_svhn,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_system_fashion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the system-wide Fashion-MNIST so only the test's files are found."""
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIRS", ())


def test_registry_lists_every_loader() -> None:
    assert DATASETS.names()[0] == "fashion_mnist"
    assert set(DATASETS.names()) == {
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "svhn",
        "stl10",
        "image_folder",
        "npz",
    }
    with pytest.raises(ConfigError, match="nope"):
        load_split("nope")


# ----------------------------------------------------------------------------- Fashion-MNIST / IDX


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx_roundtrip(tmp_path: Path, gz: bool, no_system_fashion: None) -> None:
    w = write_fashion_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    split = load_split("fashion_mnist", root=str(tmp_path), val_fraction=0.2)
    info = split.info
    assert info.class_names == FASHION_CLASSES
    assert (info.channels, info.height, info.width) == (1, 28, 28)
    assert info.background == 0.0
    assert str(tmp_path) in info.source
    assert len(split.train_y) == 40 and len(split.val_y) == 10 and len(split.test_y) == 20
    # Every image and label is the one written at its official position.
    assert torch.equal(split.train_x, torch.from_numpy(w.train_x[split.train_index.numpy()]))
    assert torch.equal(split.val_y, torch.from_numpy(w.train_y[split.val_index.numpy()]))
    assert torch.equal(split.test_x, torch.from_numpy(w.test_x))
    assert torch.equal(split.test_y, torch.from_numpy(w.test_y))
    assert split.train_x.dtype == torch.uint8 and split.train_y.dtype == torch.int64


def test_fashion_mnist_torchvision_layout(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", n_train=20, n_test=10, gz=False)
    split = load_split("fashion_mnist", root=str(tmp_path), val_fraction=0.0)
    assert len(split.train_y) == 20 and len(split.val_y) == 0 and split.val_x.shape == (0, 1, 28, 28)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path: Path, no_system_fashion: None) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        load_split("fashion_mnist", root=str(tmp_path))
    assert "--data-root" in str(err.value) and "download" in str(err.value)


def test_fashion_mnist_partial_folder_names_missing_files(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=10, n_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_split("fashion_mnist", root=str(tmp_path))


def test_idx_truncated_gzip_names_file(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=30, n_test=10)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_split("fashion_mnist", root=str(tmp_path))


def test_idx_truncated_payload_and_bad_magic(tmp_path: Path) -> None:
    images = np.zeros((3, 4, 5), np.uint8)
    good = write_idx(tmp_path / "img", images, gz=False)
    np.testing.assert_array_equal(read_idx(good, ndim=3), images)
    cut = tmp_path / "cut"
    cut.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"cut is truncated"):
        read_idx(cut)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + good.read_bytes()[4:]))
    with pytest.raises(DataError, match=r"bad.gz is not an IDX file"):
        read_idx(bad)
    with pytest.raises(DataError, match="expected an IDX file with 1 dimensions"):
        read_idx(good, ndim=1)


def test_fashion_mnist_label_count_mismatch(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=12, n_test=10)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, np.uint8), gz=True)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz has 11 labels"):
        load_split("fashion_mnist", root=str(tmp_path))


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian dataset-fashion-mnist is not installed")
def test_real_debian_fashion_mnist() -> None:
    raw = fashion_mnist.load_fashion_mnist(None)
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(raw.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(raw.test_y), torch.full((10,), 1000))
    assert str(DEBIAN_FASHION) in raw.source
    assert raw.train_x.dtype == torch.uint8 and 0 < raw.train_x.float().mean() < 255


# ----------------------------------------------------------------------------- CIFAR


def test_cifar10_batches(tmp_path: Path) -> None:
    w = write_cifar10(tmp_path, n_per_batch=4, n_test=10)
    raw = cifar.load_cifar10(tmp_path)
    assert raw.class_names == w.class_names
    assert torch.equal(raw.train_x, torch.from_numpy(w.train_x))
    assert torch.equal(raw.train_y, torch.from_numpy(w.train_y))
    assert torch.equal(raw.test_x, torch.from_numpy(w.test_x))
    assert raw.background is None
    # Pointing at the inner folder works too.
    inner = cifar.load_cifar10(tmp_path / "cifar-10-batches-py")
    assert torch.equal(inner.test_y, torch.from_numpy(w.test_y))


def test_cifar10_protocol2_pickles(tmp_path: Path) -> None:
    """Protocol-2 pickles spell bytes as _codecs.encode: still plain data, still loads."""
    w = write_cifar10(tmp_path, n_per_batch=2, n_test=3, protocol=2)
    assert torch.equal(cifar.load_cifar10(tmp_path).test_x, torch.from_numpy(w.test_x))


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    w = write_cifar100(tmp_path, n_train=30, n_test=10)
    split = load_split("cifar100", root=str(tmp_path), val_fraction=0.0)
    assert split.info.num_classes == 100 and split.info.class_names[7] == "class_07"
    assert torch.equal(split.train_y, torch.from_numpy(w.train_y))
    assert (split.info.channels, split.info.height) == (3, 32)


def test_cifar_missing_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        cifar.load_cifar10(tmp_path)
    with pytest.raises(DataError, match="--data-root"):
        cifar.load_cifar10(None)


class _Exploit:
    """Pickles into a call of ``func(*args)`` at load time."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "pathlib.Path.touch"])
def test_malicious_cifar_pickle_is_refused(tmp_path: Path, kind: str) -> None:
    write_cifar10(tmp_path, n_per_batch=2, n_test=2)
    marker = tmp_path / "pwned"
    payload: object
    if kind == "os.system":
        payload = _Exploit(os.system, f"touch {marker}")
    elif kind == "builtins.exec":
        payload = _Exploit(exec, f"open({str(marker)!r}, 'w').close()")
    else:
        payload = _Exploit(Path.touch, marker)
    target = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with target.open("wb") as f:
        pickle.dump({b"data": payload, b"labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_1") as err:
        cifar.load_cifar10(tmp_path)
    assert "refusing" in str(err.value)
    assert not marker.exists()


def test_safe_unpickle_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(DataError, match="garbage"):
        safe_unpickle(path)


# ----------------------------------------------------------------------------- SVHN / STL-10


def test_svhn_mat_maps_label_10_to_0(tmp_path: Path) -> None:
    w = write_svhn(tmp_path, n_train=20, n_test=10)
    assert (w.train_y == 0).any()
    raw = svhn.load_svhn(tmp_path)
    assert torch.equal(raw.train_x, torch.from_numpy(w.train_x))
    assert torch.equal(raw.train_y, torch.from_numpy(w.train_y))
    assert raw.class_names == tuple("0123456789")
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"test_32x32\.mat"):
        svhn.load_svhn(tmp_path)


def test_stl10_column_major_binary(tmp_path: Path) -> None:
    w = write_stl10(tmp_path, n_train=10, n_test=10)
    raw = stl10.load_stl10(tmp_path)
    assert raw.class_names == w.class_names
    assert torch.equal(raw.train_x, torch.from_numpy(w.train_x))
    assert torch.equal(raw.test_y, torch.from_numpy(w.test_y))
    # The first pixel row of image 0, channel 0, is the first value of each stored column.
    stored = np.frombuffer((tmp_path / "stl10_binary" / "train_X.bin").read_bytes(), np.uint8)
    np.testing.assert_array_equal(raw.train_x[0, 0, 0].numpy(), stored[0 : 96 * 96 : 96])
    bin_x = tmp_path / "stl10_binary" / "test_X.bin"
    bin_x.write_bytes(bin_x.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"test_X\.bin"):
        stl10.load_stl10(tmp_path)


# ----------------------------------------------------------------------------- image folder


def test_image_folder_lists_every_bad_file(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path, with_bad=True)
    with pytest.raises(DataError) as err:
        load_split("image_folder", root=str(tmp_path))
    message = str(err.value)
    assert "3 bad image file(s)" in message
    for path in folder.bad:
        assert str(path) in message


def test_image_folder_skip_bad(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_image_folder(tmp_path, n_train=6, n_test=2, with_bad=True)
    with caplog.at_level(logging.WARNING, logger="stresslab.data.loaders.image_folder"):
        split = load_split("image_folder", root=str(tmp_path), skip_bad=True, val_fraction=0.0)
    assert sorted(split.skipped) == sorted(str(p) for p in folder.bad)
    assert "skipped 3 bad image file(s)" in caplog.text
    assert len(split.train_y) == 3 * 6 and len(split.test_y) == 3 * 2
    assert split.info.class_names == ("cat", "dog", "frog")
    # Mixed sizes and modes: the most common size (16x16) and 3 channels win.
    assert split.train_x.shape[1:] == (3, 16, 16)
    assert torch.equal(torch.bincount(split.train_y), torch.tensor([6, 6, 6]))


def test_image_folder_pixels_match_the_files(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path, mixed=False, n_train=3, n_test=1)
    split = load_split("image_folder", root=str(tmp_path), val_fraction=0.0)
    # Files are read in sorted order: class "cat" image 0 is the first training image.
    expected = np.array(Image.open(folder.root / "train" / "cat" / "train_cat_0.png").convert("RGB"))
    assert torch.equal(split.train_x[0], torch.from_numpy(expected).permute(2, 0, 1))
    assert split.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_image_folder_gray_size_and_holdout(tmp_path: Path) -> None:
    write_image_folder(tmp_path, n_train=10, with_test=False, gray=True, mixed=False)
    split = load_split("image_folder", root=str(tmp_path), val_fraction=0.0, image_size=8)
    assert split.train_x.shape[1:] == (1, 8, 8)
    # 20% of each class held out as the test set, and the source says so.
    assert torch.equal(torch.bincount(split.test_y), torch.tensor([2, 2, 2]))
    assert len(split.train_y) == 24
    assert "held out as the test set" in split.info.source
    again = load_split("image_folder", root=str(tmp_path), val_fraction=0.0, image_size=8, split_seed=7)
    assert torch.equal(again.test_x, split.test_x)  # the hold-out does not move with split_seed


def test_image_folder_unknown_test_class_and_missing_train(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train"):
        load_split("image_folder", root=str(tmp_path))
    write_image_folder(tmp_path, n_train=2, n_test=1, mixed=False)
    (tmp_path / "test" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_split("image_folder", root=str(tmp_path))


# ----------------------------------------------------------------------------- npz


@pytest.mark.parametrize(("layout", "as_float"), [("nhwc", False), ("nchw", True), ("nhw", False)])
def test_npz_layouts(tmp_path: Path, layout: str, as_float: bool) -> None:
    path = tmp_path / "data.npz"
    w = write_npz(path, layout=layout, as_float=as_float)
    split = load_split("npz", root=str(path), val_fraction=0.0)
    assert torch.equal(split.train_x, torch.from_numpy(w.train_x))
    assert torch.equal(split.test_y, torch.from_numpy(w.test_y))
    assert split.info.class_names == ("a", "b", "c", "d")
    assert split.info.channels == (1 if layout == "nhw" else 3)


def test_npz_default_class_names(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    write_npz(path, class_names=None)
    assert load_split("npz", root=str(path)).info.class_names == ("0", "1", "2", "3")


@pytest.mark.parametrize("key", ["x_train", "y_test"])
def test_npz_missing_key_is_named(tmp_path: Path, key: str) -> None:
    path = tmp_path / "data.npz"
    write_npz(path, drop=key)
    with pytest.raises(DataError, match=key):
        load_split("npz", root=str(path))


def test_npz_length_mismatch_and_range(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    x = np.zeros((5, 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=np.zeros(4, np.int64), x_test=x, y_test=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="y_train"):
        load_split("npz", root=str(path))
    np.savez(path, x_train=x + 2.0, y_train=np.zeros(5, np.int64), x_test=x, y_test=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="x_train"):
        load_split("npz", root=str(path))


# ----------------------------------------------------------------------------- load_split


def test_split_is_deterministic_disjoint_and_stratified(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=200, n_test=50)
    kwargs: dict[str, Any] = {"root": str(tmp_path), "val_fraction": 0.25, "split_seed": 3}
    a, b = load_split("fashion_mnist", **kwargs), load_split("fashion_mnist", **kwargs)
    for name in ("train_index", "val_index", "test_index", "train_x", "val_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.info == b.info
    train, val = set(a.train_index.tolist()), set(a.val_index.tolist())
    assert not train & val and train | val == set(range(200))
    assert torch.equal(torch.bincount(a.val_y, minlength=10), torch.full((10,), 5))
    other = load_split("fashion_mnist", **{**kwargs, "split_seed": 4})
    assert not torch.equal(other.val_index, a.val_index)


def test_subsets_are_seeded_and_cover_classes(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=200, n_test=100)
    split = load_split("fashion_mnist", root=str(tmp_path), train_subset=30, test_subset=12)
    assert len(split.train_y) == 30 and len(split.test_y) == 12
    assert set(split.test_y.tolist()) == set(range(10))
    assert set(split.train_index.tolist()).isdisjoint(split.val_index.tolist())
    assert len(split.val_y) == 20  # the validation split is taken before the subset
    assert "training subset: 30" in split.info.source and "test subset: 12 of 100" in split.info.source


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"train_subset": 0}, "train_subset"),
        ({"test_subset": -5}, "test_subset"),
        ({"channels": 2}, "channels"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_split("fashion_mnist", root=str(tmp_path), **kwargs)


def test_channel_stats_match_numpy(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=40, n_test=10)
    split = load_split("fashion_mnist", root=str(tmp_path), val_fraction=0.1)
    ref = split.train_x.numpy().astype(np.float64) / 255.0
    assert split.info.mean == pytest.approx((ref.mean(),), abs=1e-12)
    assert split.info.std == pytest.approx((ref.std(),), abs=1e-12)
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (x.double() / 255).mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    np.testing.assert_allclose(std, (x.double() / 255).std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-12)


def test_convert_channels_and_size_against_references(tmp_path: Path, no_system_fashion: None) -> None:
    from torchvision.transforms.v2 import functional as tvf

    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    gray = convert_images(x, channels=1)
    pil = np.stack([np.asarray(Image.fromarray(im.permute(1, 2, 0).numpy()).convert("L")) for im in x])
    assert (gray[:, 0].int() - torch.from_numpy(pil).int()).abs().max() <= 1
    rgb = convert_images(gray, channels=3)
    assert torch.equal(rgb, gray.repeat(1, 3, 1, 1))
    small = convert_images(x, size=(9, 9))
    ref = tvf.resize(x.float(), [9, 9], antialias=True).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(small, ref)
    # Through load_split: Fashion-MNIST as 3-channel 32x32.
    write_fashion_mnist(tmp_path, n_train=20, n_test=10)
    split = load_split("fashion_mnist", root=str(tmp_path), image_size=32, channels=3)
    assert split.train_x.shape[1:] == (3, 32, 32) and split.test_x.shape[1:] == (3, 32, 32)
    assert (split.info.channels, split.info.height, split.info.width) == (3, 32, 32)
    assert torch.equal(split.train_x[:, 0], split.train_x[:, 2])


def test_stratified_sample_hand_case() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    # Ideal shares 3, 1.5, 0.5 -> floors 3, 1, 0 -> every class gets one: 3, 1, 1.
    pick = stratified_sample(labels, 5, seed=0)
    assert torch.bincount(labels[pick], minlength=3).tolist() == [3, 1, 1]
    assert torch.equal(pick, stratified_sample(labels, 5, seed=0))
    assert torch.equal(pick, pick.sort().values)
    # keep_one_out never takes the last image of a class.
    held = stratified_sample(labels, 5, seed=1, keep_one_out=True)
    assert torch.bincount(labels[held], minlength=3)[2] == 0
    assert len(held) == 5


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(path)
    img = read_image_file(path)
    assert img.mode == "L"
    assert np.asarray(img).tolist() == [[0, 128, 255]]
    assert read_image_file(path, "RGB").mode == "RGB"


def test_download_failure_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"downloading CIFAR-10 into .* failed: network unreachable"):
        cifar.load_cifar10(tmp_path, download=True)


# ----------------------------------------------------------------------------- loader options


def test_each_loader_declares_the_options_it_uses() -> None:
    options = {name: DATASETS.get(name).options for name in DATASETS.names()}
    for name in ("fashion_mnist", "cifar10", "cifar100", "svhn", "stl10"):
        assert options[name] == {"download"}, name
    assert options["image_folder"] == {
        "skip_bad",
        "image_size",
        "channels",
        "class_names",
        "crop_pct",
        "cache",
    }
    assert options["npz"] == {"cache"}


@pytest.mark.parametrize(
    ("dataset", "option"), [("cifar10", "skip_bad"), ("npz", "download"), ("image_folder", "download")]
)
def test_option_the_dataset_does_not_use_is_a_config_error(tmp_path: Path, dataset: str, option: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_split(dataset, root=str(tmp_path), **{option: True})
    message = str(err.value)
    assert f"data.{option}" in message and repr(dataset) in message


def test_load_split_passes_only_declared_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Registry[loader_base.DatasetLoader] = Registry("dataset")
    monkeypatch.setattr(loader_base, "DATASETS", registry)
    monkeypatch.setattr(split_module, "DATASETS", registry)
    seen: list[dict[str, object]] = []

    @register_dataset("recorder")
    def load_recorder(root: Path | None, *, skip_bad: bool = False) -> RawDataset:
        seen.append({"root": root, "skip_bad": skip_bad})
        x = torch.zeros(12, 1, 4, 4, dtype=torch.uint8)
        x[::2] = 9
        y = torch.arange(12) % 2
        return RawDataset(x, y, x, y, ("a", "b"), source="memory")

    assert registry.get("recorder").options == {"skip_bad"}
    # image_size and channels are applied by load_split itself: accepted, never passed on.
    split = load_split("recorder", root=str(tmp_path), skip_bad=True, image_size=8, channels=3)
    assert seen == [{"root": tmp_path, "skip_bad": True}]
    assert split.train_x.shape[1:] == (3, 8, 8)
    with pytest.raises(ConfigError, match=r"data.download is set, but dataset 'recorder'"):
        load_split("recorder", download=True)
    # Calling the registered loader with an option it does not declare is refused as well.
    with pytest.raises(ConfigError, match="image_size"):
        registry.get("recorder")(None, image_size=8)


def test_register_dataset_rejects_undeclared_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Registry[loader_base.DatasetLoader] = Registry("dataset")
    monkeypatch.setattr(loader_base, "DATASETS", registry)

    def positional_option(root: Path | None, download: bool = False) -> RawDataset:
        raise AssertionError

    def unknown_option(root: Path | None, *, colour: str = "red") -> RawDataset:
        raise AssertionError

    for fn in (positional_option, unknown_option):
        with pytest.raises(TypeError, match="keyword-only"):
            register_dataset("bad")(fn)
    assert registry.names() == []


# ----------------------------------------------------------------------------- class coverage


def test_coverage_warnings_hand_case() -> None:
    assert MIN_TRAIN_IMAGES_PER_CLASS == 5
    train = torch.tensor([0] * 5 + [1] * 2)
    test = torch.tensor([0, 1, 2, 2])
    out = coverage_warnings(train, test, ("a", "b", "c", "d"), "toy")
    assert len(out) == 2
    assert "1 class(es) occur in the test set but never in the training set: c (2 test images)" in out[0]
    # a has exactly 5 (not flagged); b has 2; d has none in either set; c is in the first warning.
    assert "2 class(es) have fewer than 5 training images" in out[1] and ": b (2), d (0)." in out[1]
    assert coverage_warnings(torch.arange(10).repeat(5), torch.arange(10), tuple("abcdefghij"), "ok") == []


def test_coverage_warning_names_at_most_twenty_classes() -> None:
    names = tuple(f"c{i}" for i in range(25))
    (out,) = coverage_warnings(torch.arange(25), torch.arange(25), names, "many")
    assert "25 class(es)" in out and "c19 (1)" in out and "c20" not in out and "and 5 more" in out


def test_npz_label_outside_class_names_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    write_npz(path, test_labels=[0, 1, 2, 3, 4, 7])
    with pytest.raises(DataError) as err:
        load_split("npz", root=str(path))
    message = str(err.value)
    assert str(path) in message and "'y_test'" in message and "found 4, 7" in message


def test_npz_test_class_missing_from_training_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "data.npz"
    write_npz(path, train_labels=[0, 1, 2] * 8, test_labels=[0, 1, 2, 3, 3, 3])
    with caplog.at_level(logging.WARNING, logger="stresslab.data.split"):
        split = load_split("npz", root=str(path), val_fraction=0.0)
    assert len(split.warnings) == 1
    assert "never in the training set: d (3 test images)" in split.warnings[0]
    assert split.warnings[0] in caplog.text


def test_npz_ten_training_images_warn_per_class(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "data.npz"
    write_npz(path, train_labels=[0, 0, 0, 1, 1, 1, 2, 2, 3, 3], n_test=8)
    with caplog.at_level(logging.WARNING, logger="stresslab.data.split"):
        split = load_split("npz", root=str(path), val_fraction=0.0)
    assert split.warnings == [
        "npz: 4 class(es) have fewer than 5 training images (after the validation split and subsets): "
        "a (3), b (3), c (2), d (2). The model can barely learn them; their accuracy says little."
    ]
    assert split.warnings[0] in caplog.text


def test_image_folder_few_images_warn_with_counts(tmp_path: Path) -> None:
    write_image_folder(tmp_path, n_train=4, n_test=2, mixed=False)
    split = load_split("image_folder", root=str(tmp_path), val_fraction=0.25)
    # 4 per class, one of each held out for validation: 3 left to train on.
    assert len(split.warnings) == 1 and "cat (3), dog (3), frog (3)" in split.warnings[0]


def test_enough_training_images_give_no_warning(tmp_path: Path, no_system_fashion: None) -> None:
    write_fashion_mnist(tmp_path, n_train=120, n_test=20)
    assert load_split("fashion_mnist", root=str(tmp_path), val_fraction=0.1).warnings == []
    small = load_split("fashion_mnist", root=str(tmp_path), val_fraction=0.1, train_subset=30)
    assert len(small.warnings) == 1 and "10 class(es) have fewer than 5" in small.warnings[0]


def test_a_given_fashion_mnist_root_is_not_replaced_by_the_system_copy(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match="no-such-folder"):
        fashion_mnist.load_fashion_mnist(missing)
