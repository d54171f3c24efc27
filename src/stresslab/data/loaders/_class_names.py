"""Class folders matched to a model's class names by name, not by sorted order.

A class name may hold characters a folder name cannot: a ``/`` in a class name is written
``_`` in its folder's name (``"t-shirt/top"`` -> ``t-shirt_top``). A folder whose name is a
class name exactly is that class; otherwise the folder is the class whose name, with every
``/`` written ``_``, is the folder's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stresslab.errors import DataError


def folder_name(class_name: str) -> str:
    """The folder name of ``class_name``: every ``/`` written ``_``."""
    return class_name.replace("/", "_")


def _listed(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def match_folders(folders: Sequence[str], class_names: Sequence[str], where: Path) -> dict[str, int]:
    """``{folder: class index}`` for each class folder of ``where``, by name.

    ``class_names`` are the model's K class names in label order, so the labels the folder
    gives are the model's class indices; a folder set may hold fewer classes than the model.
    Raises DataError naming ``where`` and listing both sets when a folder matches no class (or
    two), or when ``class_names`` repeats a name.
    """
    repeated = sorted({c for c in class_names if list(class_names).count(c) > 1})
    if repeated:
        raise DataError(f"class names repeat {_listed(repeated)}; each class needs its own name")
    exact = {c: i for i, c in enumerate(class_names)}
    by_folder: dict[str, list[int]] = {}
    for i, c in enumerate(class_names):
        by_folder.setdefault(folder_name(c), []).append(i)
    out: dict[str, int] = {}
    unknown: list[str] = []
    for f in folders:
        if f in exact:
            out[f] = exact[f]
        elif len(by_folder.get(f, [])) == 1:
            out[f] = by_folder[f][0]
        elif f in by_folder:
            both = [class_names[i] for i in by_folder[f]]
            raise DataError(f"{where / f}: the folder name matches more than one class: {_listed(both)}")
        else:
            unknown.append(f)
    if unknown:
        what = (
            "none of its class folders matches"
            if len(unknown) == len(folders)
            else f"{len(unknown)} of its {len(folders)} class folders match none of"
        )
        raise DataError(
            f"{where}: {what} the model's classes (a '/' in a class name is written '_' in a folder "
            f"name).\n  folders not matched: {_listed(unknown)}\n  the model's classes: "
            f"{_listed(list(class_names))}"
        )
    return out
