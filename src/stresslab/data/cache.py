"""The on-disk image cache: a dataset decoded once into a memory-mapped uint8 array.

Loaders whose decoded images would not fit comfortably in memory (image folders, ``.npz``
files) decode them once into ``<cache folder>/images/<entry>/images.u8``, a raw uint8 array
(N, C, H, W) in C order, and read it back as a copy-on-write memory map: pages come from
the file as they are touched, and a stray in-place write changes the process's copy, never
the cache. Each entry has a ``manifest.json`` holding the *key* (a SHA-256 of every source
file's path, size and modification time and of the decode settings), the array's shape and
the loader's own notes (bad files, image size).

Rules:

- The cache folder is ``data.cache_dir``, else ``$STRESSLAB_CACHE``, else
  ``$XDG_CACHE_HOME/stresslab`` (default ``~/.cache/stresslab``).
- ``data.cache``: ``auto`` (default) caches a dataset whose decoded images exceed
  :data:`AUTO_BYTES` (and reuses an entry already built); ``always`` caches any size;
  ``never`` decodes into memory as before.
- A build writes a temp file in the entry's folder, fsyncs and renames it, and writes the
  manifest last (atomically), after removing the old one first: a killed build leaves no
  manifest, so it never looks whole. A source file whose size or modification time changed
  while it was decoded stops the build with a DataError naming it.
- A manifest whose key differs (a file added, removed or changed, other decode settings) or
  whose array file is shorter or longer than its shape says (truncated) is rebuilt.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import mmap
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stresslab.errors import DataError
from stresslab.files import atomic_write_json

logger = logging.getLogger(__name__)

#: ``data.cache: auto`` caches datasets whose decoded uint8 images exceed this many bytes.
AUTO_BYTES = 1 << 30
#: Environment variable naming the cache folder when ``data.cache_dir`` is not set.
CACHE_ENV = "STRESSLAB_CACHE"
#: Version of the entry layout; a manifest of another version is rebuilt.
LAYOUT_VERSION = 1

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import, as stresslab.files does: umask is process-wide

CacheMode = Literal["auto", "always", "never"]
Stamp = tuple[str, int, int]  # (absolute path, size in bytes, modification time in ns)


@dataclass(frozen=True)
class CacheSettings:
    """Whether and where to cache decoded images (``data.cache`` and ``data.cache_dir``)."""

    mode: CacheMode = "auto"
    folder: str | Path | None = None

    def root(self) -> Path:
        """The cache folder: ``folder``, ``$STRESSLAB_CACHE``, or the per-user cache folder."""
        if self.folder is not None:
            return Path(self.folder).expanduser()
        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV]).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base).expanduser() / "stresslab"

    def wants(self, nbytes: int) -> bool:
        """Whether a dataset of ``nbytes`` decoded uint8 bytes goes to the cache."""
        if self.mode not in ("auto", "always", "never"):
            raise DataError(f"data.cache must be auto, always or never, got {self.mode!r}")
        return self.mode == "always" or (self.mode == "auto" and nbytes > AUTO_BYTES)


def stamps(paths: Sequence[Path]) -> list[Stamp]:
    """(absolute path, size, mtime in ns) of each file; DataError naming a file that vanished."""
    out: list[Stamp] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"cannot read {p} ({exc})") from exc
        out.append((str(p.absolute()), st.st_size, st.st_mtime_ns))
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass
class CachedImages:
    """A cache entry read back: ``images`` uint8 (N, C, H, W), memory-mapped copy-on-write,
    and ``notes``, what the loader stored with it (JSON-compatible)."""

    images: np.ndarray
    notes: dict[str, Any]
    path: Path


class ImageCache:
    """One entry of the cache: the decoded images of ``sources`` under ``settings``.

    ``kind`` and ``source`` (the dataset's root) name the entry's folder together with
    ``decode`` (the settings that change the pixels: size, channels); the key adds every
    file's size and modification time, so a changed file rebuilds the same entry.
    """

    def __init__(
        self,
        settings: CacheSettings,
        kind: str,
        source: Path,
        sources: Sequence[Path],
        decode: dict[str, Any],
    ) -> None:
        name = _digest({"kind": kind, "source": str(source.absolute()), "decode": decode})[:20]
        self.folder = settings.root() / "images" / f"{kind}-{name}"
        self.manifest_path = self.folder / "manifest.json"
        self.data_path = self.folder / "images.u8"
        self.sources = list(sources)
        self.stamps = stamps(self.sources)
        self.key = _digest({"version": LAYOUT_VERSION, "decode": decode, "files": self.stamps})

    def load(self) -> CachedImages | None:
        """The entry when its manifest matches the key and its array file is whole, else None
        (a truncated or mismatched entry is logged and left to :meth:`build` to replace)."""
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("key") != self.key:
            logger.info("image cache %s is stale (source files or settings changed): rebuilding", self.folder)
            return None
        try:
            shape = tuple(int(s) for s in manifest["shape"])
        except (KeyError, TypeError, ValueError):
            logger.warning("image cache manifest %s has no valid shape: rebuilding", self.manifest_path)
            return None
        if len(shape) != 4 or min(shape) < 0:
            logger.warning("image cache manifest %s has shape %s: rebuilding", self.manifest_path, shape)
            return None
        expected = int(np.prod(shape, dtype=np.int64))
        try:
            actual = self.data_path.stat().st_size
        except OSError:
            actual = -1
        if actual != expected:
            logger.warning(
                "image cache file %s holds %d bytes, its manifest says %s = %d: rebuilding",
                self.data_path,
                actual,
                shape,
                expected,
            )
            return None
        images = _open(self.data_path, shape)
        return CachedImages(images, dict(manifest.get("notes", {})), self.data_path)

    def build(
        self, shape: tuple[int, int, int, int], fill: Callable[[np.ndarray], tuple[int, dict[str, Any]]]
    ) -> CachedImages:
        """Write the entry: ``fill(rows)`` writes images into ``rows`` (uint8, ``shape``), and
        returns how many leading rows it used and its notes; the rest are cut off.

        Raises DataError naming the folder when it cannot be written, and naming the files
        whose size or modification time changed while they were decoded; either way no
        manifest is left behind, so nothing half-written is ever read as an entry.
        """
        tmp = self._start()
        try:
            rows = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape) if shape[0] else None
            used, notes = fill(rows if rows is not None else np.empty(shape, np.uint8))
            if rows is not None:
                rows.flush()
                del rows
            row_bytes = int(np.prod(shape[1:], dtype=np.int64))
            os.truncate(tmp, used * row_bytes)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            self._check_unchanged()
            os.replace(tmp, self.data_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        final = (used, *shape[1:])
        atomic_write_json(
            self.manifest_path,
            {"key": self.key, "version": LAYOUT_VERSION, "shape": list(final), "notes": notes},
        )
        logger.info("image cache written: %s (%d images)", self.data_path, used)
        return CachedImages(_open(self.data_path, final), notes, self.data_path)

    def _start(self) -> Path:
        """Remove the old manifest (an interrupted build must not pass as whole) and create
        the temp file; DataError naming the folder when that is not possible."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.manifest_path.unlink(missing_ok=True)
            fd, name = tempfile.mkstemp(dir=self.folder, prefix=".images.", suffix=".tmp")
            os.close(fd)
            os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        except OSError as exc:
            raise DataError(
                f"image cache folder {self.folder} is not writable ({exc}); set data.cache_dir or "
                f"${CACHE_ENV} to a writable folder, or data.cache: never to decode into memory"
            ) from exc
        return Path(name)

    def _check_unchanged(self) -> None:
        """DataError naming every source file whose size or mtime differs from the key's."""
        after = stamps(self.sources)
        changed = [a[0] for a, b in zip(after, self.stamps, strict=True) if a != b]
        if changed:
            shown = "\n  ".join(changed[:20]) + ("\n  ..." if len(changed) > 20 else "")
            raise DataError(
                f"{len(changed)} file(s) changed while the image cache {self.folder} was built; "
                f"nothing was cached, load again once they stop changing:\n  {shown}"
            )


_MAPPED: list[weakref.ref[np.memmap]] = []
"""The cache memory maps :func:`_open` made (weakly held), for :func:`mapped_ranges` and
:func:`release_pages`."""


def _open(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The array file as a copy-on-write memory map (an empty array for zero rows)."""
    if shape[0] == 0:
        return np.empty(shape, dtype=np.uint8)
    images = np.memmap(path, dtype=np.uint8, mode="c", shape=shape)
    _MAPPED[:] = [r for r in _MAPPED if r() is not None]
    _MAPPED.append(weakref.ref(images))
    return images


def mapped_ranges() -> list[tuple[int, int]]:
    """(first address, end address) of each cache memory map alive in this process, so a
    split can tell a view of the cache (kept as a view) from images in memory."""
    out = []
    for ref in _MAPPED:
        images = ref()
        if images is not None:
            start = images.ctypes.data
            out.append((start, start + images.nbytes))
    return out


def release_pages() -> int:
    """Drop every open cache map's pages from this process's resident set; the number of maps.

    Pages read through a memory map stay mapped, and counted in the process's RSS, until the
    kernel needs the memory: one pass over 100,000 images of 96 px maps 2.8 GB. Releasing them
    (``MADV_DONTNEED``) after each pass keeps the resident set at what one pass reads; a later
    read maps the page again from the page cache (or the disk). The maps are copy-on-write and
    never written, so nothing is lost (a stray in-place write to a cached image is undone).
    Does nothing where ``madvise`` is not available.
    """
    advice = getattr(mmap, "MADV_DONTNEED", None)
    released = 0
    for ref in list(_MAPPED):
        images = ref()
        if images is None:
            _MAPPED.remove(ref)
            continue
        mapped = getattr(images, "_mmap", None)
        if advice is not None and mapped is not None:
            mapped.madvise(advice)
            released += 1
    trim_heap()
    return released


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim(0)``); False
    where there is no such call. Called after each pass (:func:`release_pages`).

    Freed buffers of a few megabytes (a batch's activations) go back to glibc's heap, not to
    the system, and a small buffer that outlives them pins the heap's top: predicting 100,000
    images of 96 px in batches of 87 left 1.8 GB of free heap counted as the process's
    anonymous memory, which ``malloc_trim`` returned. One call costs well under a millisecond
    when there is little to return.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
