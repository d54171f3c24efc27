"""The diagnosis table: one row per misclassified test image, written as
``RUN_DIR/diagnosis.csv`` (and kept in ``results/diagnosis.json``).

Columns: :data:`BASE_COLUMNS` then every evidence column of
:data:`stresslab.diagnosis.records.COLUMNS`. Empty cells are evidence a run did not measure.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from stresslab.diagnosis.records import COLUMNS
from stresslab.files import atomic_write_text

BASE_COLUMNS = ("index", "true", "predicted", "confidence", "cause")
ALL_COLUMNS = BASE_COLUMNS + tuple(c.name for c in COLUMNS)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """``rows`` (dicts keyed by :data:`ALL_COLUMNS`) as CSV text with a header line;
    booleans are ``true``/``false``, empty evidence is an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ALL_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in ALL_COLUMNS])
    return buf.getvalue()


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write :func:`to_csv` of ``rows`` to ``path`` atomically."""
    atomic_write_text(path, to_csv(rows))


def read_causes(path: str | Path) -> dict[int, str]:
    """Official test index -> cause, from a ``diagnosis.csv``."""
    with open(path, newline="") as f:
        return {int(r["index"]): r["cause"] for r in csv.DictReader(f)}
