"""Finding and fetching a dataset's files: the helpers the archive-based loaders share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stresslab.data.loaders.base import DEFAULT_DOWNLOAD_ROOT
from stresslab.errors import DataError


def require_root(root: Path | None, download: bool, name: str, layout: str) -> Path:
    """``root``; the default download folder when downloading; else DataError saying what to pass."""
    if root is not None:
        return root
    if download:
        return DEFAULT_DOWNLOAD_ROOT
    raise DataError(f"{name} needs `--data-root DIR` holding {layout} (or `download: true` with a network)")


def download_archive(name: str, url: str, root: Path, filename: str, md5: str) -> None:
    """Download and extract ``url`` into ``root`` (checksum ``md5``); any failure is a DataError."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, str(root), filename=filename, md5=md5)
    except Exception as exc:  # network and checksum failures come in many types
        raise DataError(f"downloading {name} into {root} failed: {exc}") from exc


def pick_folder(root: Path, folder: str, marker: str) -> Path:
    """``root/folder``, or ``root`` itself when the user pointed at the inner folder."""
    if not (root / folder / marker).exists() and (root / marker).exists():
        return root
    return root / folder


def require_files(folder: Path, names: Sequence[str], dataset: str) -> None:
    """DataError listing every file of ``names`` missing from ``folder``."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{dataset}: missing {', '.join(str(folder / n) for n in missing)}")
