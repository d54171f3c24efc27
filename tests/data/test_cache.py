"""The on-disk image cache: built, reused without decoding, rebuilt on change, same pixels,
and a clear error naming the path for each bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from stresslab.data import load_split
from stresslab.data.cache import CACHE_ENV, CacheSettings, ImageCache, release_pages
from stresslab.data.indexed import IndexedImages
from stresslab.data.loaders import folder_cache
from stresslab.errors import ConfigError, DataError
from tests.data_factories import write_image_folder, write_npz


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path the cache decodes, in order."""
    seen: list[Path] = []
    real = folder_cache.decode_image

    def counting(
        path: Path, size: tuple[int, int], channels: int, crop_pct: float | None = None
    ) -> np.ndarray | str:
        seen.append(path)
        return real(path, size, channels, crop_pct)

    monkeypatch.setattr(folder_cache, "decode_image", counting)
    return seen


def _mapped_from(address: int) -> str:
    """The file mapped at ``address`` in this process ("" for anonymous memory), from /proc."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= address < hi:
            return fields[5].strip() if len(fields) > 5 else ""
    return ""


def _always(tmp_path: Path) -> CacheSettings:
    return CacheSettings("always", tmp_path / "cache")


def _entry(tmp_path: Path) -> Path:
    (entry,) = (tmp_path / "cache" / "images").iterdir()
    return entry


def test_cached_folder_has_the_in_memory_pixels_and_is_reused(tmp_path: Path, decodes: list[Path]) -> None:
    write_image_folder(tmp_path / "data", n_train=4, n_test=2)
    kwargs = {"root": str(tmp_path / "data"), "val_fraction": 0.25}
    memory = load_split("image_folder", cache=CacheSettings("never"), **kwargs)  # type: ignore[arg-type]
    assert decodes == []  # the in-memory path does not go through the cache
    cached = load_split("image_folder", cache=_always(tmp_path), **kwargs)  # type: ignore[arg-type]
    n_files = len(list((tmp_path / "data").rglob("*.png"))) + len(list((tmp_path / "data").rglob("*.jpg")))
    assert len(decodes) == n_files
    for part in ("test_x", "train_y", "val_y", "test_y", "test_index", "train_index", "val_index"):
        assert torch.equal(getattr(memory, part), getattr(cached, part)), part
    assert memory.info == cached.info
    # The whole test set is a view of the memory-mapped cache file, not a copy; the training
    # and validation images are the cache file and their rows' positions, read by index.
    mapped = str(_entry(tmp_path) / "images.u8")
    assert _mapped_from(cached.test_x.data_ptr()) == mapped
    for part in ("train_x", "val_x"):
        view = getattr(cached, part)
        assert isinstance(view, IndexedImages) and _mapped_from(view.base.data_ptr()) == mapped
        assert view.shape == getattr(memory, part).shape and torch.equal(view[:], getattr(memory, part))
    assert isinstance(memory.train_x, torch.Tensor)  # in memory: a tensor, as before
    again = load_split("image_folder", cache=_always(tmp_path), **kwargs)  # type: ignore[arg-type]
    assert len(decodes) == n_files  # second load: no image decoded
    assert torch.equal(again.test_x, memory.test_x)


def test_in_place_write_never_reaches_the_cache(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    settings = _always(tmp_path)
    first = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    before = first.test_x.clone()
    first.test_x.add_(1)  # copy-on-write: changes this process's pages only
    again = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    assert torch.equal(again.test_x, before)


def test_changed_file_rebuilds(tmp_path: Path, decodes: list[Path]) -> None:
    written = write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    settings = _always(tmp_path)
    load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    n = len(decodes)
    target = next((tmp_path / "data" / "test").rglob("*.png"))
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    split = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    assert len(decodes) == 2 * n  # key mismatch: everything decoded again
    red = torch.tensor([200, 10, 10], dtype=torch.uint8).view(3, 1, 1)
    assert (split.test_x == red).all(dim=(1, 2, 3)).any()
    assert written.bad == []


def test_truncated_cache_is_rebuilt(
    tmp_path: Path, decodes: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    settings = _always(tmp_path)
    first = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    expected = first.train_x.clone(), first.test_x.clone()
    del first  # its pages map the file about to be cut
    n = len(decodes)
    data = _entry(tmp_path) / "images.u8"
    os.truncate(data, data.stat().st_size - 7)
    again = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    assert len(decodes) == 2 * n
    assert str(data) in caplog.text and "rebuilding" in caplog.text
    assert torch.equal(expected[0], again.train_x) and torch.equal(expected[1], again.test_x)


def test_unwritable_cache_folder_is_named(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=r"not_a_folder.* is not writable"):
        load_split("image_folder", root=str(tmp_path / "data"), cache=CacheSettings("always", blocker))
    assert blocker.read_text().startswith("a file")


def test_file_changed_during_build_is_named_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    target = sorted((tmp_path / "data" / "train").rglob("*.png"))[0]
    real = folder_cache.decode_image

    def touching(
        path: Path, size: tuple[int, int], channels: int, crop_pct: float | None = None
    ) -> np.ndarray | str:
        if path == target:  # another program rewrites the file while it is decoded
            with target.open("ab") as f:
                f.write(b"\0")
        return real(path, size, channels, crop_pct)

    monkeypatch.setattr(folder_cache, "decode_image", touching)
    with pytest.raises(DataError, match="changed while the image cache") as err:
        load_split("image_folder", root=str(tmp_path / "data"), cache=_always(tmp_path))
    assert str(target.absolute()) in str(err.value)
    assert sorted(p.name for p in _entry(tmp_path).iterdir()) == []  # no manifest, no temp file


def test_killed_build_never_looks_whole(tmp_path: Path, decodes: list[Path]) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    settings = _always(tmp_path)
    load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    n = len(decodes)
    entry = ImageCache(settings, "x", tmp_path, [], {})

    def killed(rows: np.ndarray) -> tuple[int, dict[str, int]]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        entry.build((2, 1, 2, 2), killed)
    assert list(entry.folder.iterdir()) == []
    # The folder's own entry is still whole and reused.
    load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    assert len(decodes) == n


def test_bad_files_are_cached_with_their_errors(tmp_path: Path, decodes: list[Path]) -> None:
    written = write_image_folder(tmp_path / "data", n_train=6, n_test=2, with_bad=True)
    settings = _always(tmp_path)
    root = str(tmp_path / "data")
    memory = load_split("image_folder", root=root, skip_bad=True, cache=CacheSettings("never"))
    cached = load_split("image_folder", root=root, skip_bad=True, cache=settings)
    assert cached.skipped == memory.skipped and len(cached.skipped) == len(written.bad)
    assert torch.equal(cached.train_x[:], memory.train_x) and torch.equal(cached.test_x, memory.test_x)
    n = len(decodes)
    with pytest.raises(DataError, match="bad image file"):  # without skip_bad: the same error, from the cache
        load_split("image_folder", root=str(tmp_path / "data"), cache=settings)
    assert len(decodes) == n


def test_manifest_is_written_last_with_the_shape(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    load_split("image_folder", root=str(tmp_path / "data"), cache=_always(tmp_path))
    entry = _entry(tmp_path)
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["shape"] == [9, 3, 16, 16]
    assert (entry / "images.u8").stat().st_size == 9 * 3 * 16 * 16
    assert sorted(p.name for p in entry.iterdir()) == ["images.u8", "manifest.json"]


def test_npz_cache_matches_memory(tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz", layout="nchw", as_float=True)
    memory = load_split("npz", root=str(tmp_path / "d.npz"), cache=CacheSettings("never"))
    cached = load_split("npz", root=str(tmp_path / "d.npz"), cache=_always(tmp_path))
    for part in ("train_x", "val_x", "test_x", "train_y", "test_y"):
        assert torch.equal(getattr(memory, part)[:], getattr(cached, part)[:]), part
    assert isinstance(cached.train_x, IndexedImages) and memory.info == cached.info


def test_auto_keeps_small_sets_in_memory_and_env_sets_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env_cache"))
    assert CacheSettings().root() == tmp_path / "env_cache"
    assert CacheSettings(folder=tmp_path / "x").root() == tmp_path / "x"
    assert not CacheSettings().wants(10**6) and CacheSettings().wants(2 << 30)
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    load_split("image_folder", root=str(tmp_path / "data"))
    assert not (tmp_path / "env_cache").exists()


def test_cache_on_a_dataset_that_does_not_cache_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.cache"):
        load_split("cifar10", root=str(tmp_path), cache=CacheSettings("always"))


def test_run_config_passes_the_cache_settings(tmp_path: Path) -> None:
    from stresslab.runs.config import RunConfig
    from stresslab.runs.prepare import load_data

    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    data = {"dataset": "image_folder", "root": str(tmp_path / "data"), "cache": "always"}
    split = load_data(RunConfig.model_validate({"data": {**data, "cache_dir": str(tmp_path / "cache")}}))
    assert (_entry(tmp_path) / "manifest.json").is_file() and len(split.test_y) == 3
    with pytest.raises(ValueError, match="cache"):
        RunConfig.model_validate({"data": {**data, "cache": "sometimes"}})


@pytest.mark.parametrize("damage", ["not json", "no shape"])
def test_damaged_manifest_is_rebuilt(tmp_path: Path, decodes: list[Path], damage: str) -> None:
    write_image_folder(tmp_path / "data", n_train=2, n_test=1, mixed=False)
    settings = _always(tmp_path)
    first = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    expected, n = first.test_x.clone(), len(decodes)
    manifest = _entry(tmp_path) / "manifest.json"
    if damage == "not json":
        manifest.write_text("{")
    else:
        record = json.loads(manifest.read_text())
        del record["shape"]
        manifest.write_text(json.dumps(record))
    again = load_split("image_folder", root=str(tmp_path / "data"), val_fraction=0.0, cache=settings)
    assert len(decodes) == 2 * n and torch.equal(again.test_x, expected)


def _rss_file_kb(field: str = "RssFile") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return -1


def test_each_pass_trims_the_c_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freed buffers of a few MB can stay in glibc's heap, counted as the process's memory,
    until ``malloc_trim``: release_pages, called after every pass, trims it (measured on
    100,000 cached images of 96 px: 1.8 GB of free heap returned)."""
    from stresslab.data import cache

    calls: list[int] = []
    monkeypatch.setattr(cache, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    release_pages()
    assert calls == [0]
    monkeypatch.setattr(cache, "_MALLOC_TRIM", None)  # no glibc: nothing to call, no error
    assert cache.trim_heap() is False
    release_pages()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_released_pages_leave_the_resident_set_and_read_back_the_same(tmp_path: Path) -> None:
    entry = ImageCache(_always(tmp_path), "folder", tmp_path, [], {})
    shape = (64, 4, 128, 128)  # 4 MiB
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)

    def fill(rows: np.ndarray) -> tuple[int, dict[str, object]]:
        rows[:] = pixels
        return shape[0], {}

    images = torch.from_numpy(entry.build(shape, fill).images)
    release_pages()
    before = _rss_file_kb()
    assert int(images.sum(dtype=torch.int64)) == int(pixels.sum(dtype=np.int64))  # maps every page
    read = _rss_file_kb()
    assert release_pages() >= 1
    after = _rss_file_kb()
    assert read - before >= 3 * 1024  # reading mapped most of the 4 MiB ...
    assert read - after >= 3 * 1024  # ... and releasing unmapped them
    assert torch.equal(images, torch.from_numpy(pixels))  # read back unchanged
