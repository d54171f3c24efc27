"""``RUN_DIR/predictions.npz``: every run's per-image test predictions, so cases can be
followed across runs (a study joins runs on the official test-set index).

The file holds ``probs`` (N, K) float32 softmax probabilities, ``labels`` (N,) int64,
``index`` (N,) int64 positions in the official test set (``Predictions.index``) and
``class_names`` (K,) strings. It is written atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stresslab.errors import StresslabError
from stresslab.files import atomic_write_bytes
from stresslab.probes.predictions import Predictions

FILENAME = "predictions.npz"


@dataclass(frozen=True)
class SavedPredictions:
    """Predictions read back from a run: ``probs`` (N, K) float32, rows sum to 1;
    ``labels`` and ``index`` (N,) int64; ``class_names`` K strings."""

    probs: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    class_names: tuple[str, ...]

    @property
    def preds(self) -> np.ndarray:
        """Predicted class (N,) int64 (argmax of ``probs``)."""
        return self.probs.argmax(axis=1).astype(np.int64)

    @property
    def correct(self) -> np.ndarray:
        """(N,) bool: the prediction equals the label."""
        return np.asarray(self.preds == self.labels)


def save_predictions(path: str | Path, preds: Predictions, class_names: tuple[str, ...] | list[str]) -> None:
    """Write ``preds`` (test split) to ``path`` as a compressed ``.npz``, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        probs=preds.probs.float().numpy().astype(np.float32),
        labels=preds.labels.long().numpy(),
        index=preds.index.long().numpy(),
        class_names=np.array(list(class_names), dtype=str),
    )
    atomic_write_bytes(path, buf.getvalue())


def load_predictions(path: str | Path) -> SavedPredictions:
    """Read a file written by :func:`save_predictions`; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise StresslabError(f"missing predictions file: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            probs = z["probs"].astype(np.float32)
            labels = z["labels"].astype(np.int64)
            index = z["index"].astype(np.int64)
            names = tuple(str(s) for s in z["class_names"])
    except (OSError, KeyError, ValueError) as e:
        raise StresslabError(f"{p}: not a readable predictions file: {e}") from None
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) != len(index):
        raise StresslabError(
            f"{p}: inconsistent shapes probs {probs.shape}, labels {labels.shape}, index {index.shape}"
        )
    return SavedPredictions(probs, labels, index, names)
