"""Thresholds from the data's own distribution, and the flags they raise.

A property is flagged beyond Tukey's far fence of its distribution on the training sample:
below ``Q1 - factor * spread`` (dark, low contrast, low information, blurry) or above
``Q3 + factor * spread`` (light), where ``spread`` is the interquartile range, floored at a
quarter of the 5-95% range so a property that barely varies does not flag its own noise.
``factor`` 3 is Tukey's "far out" (Tukey, *Exploratory Data Analysis*, 1977).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# issue -> (property, side)
FENCED: dict[str, tuple[str, str]] = {
    "dark": ("bright_p99", "low"),
    "light": ("bright_p05", "high"),
    "low_contrast": ("contrast", "low"),
    "low_information": ("entropy", "low"),
    "blurry": ("sharpness", "low"),
}


@dataclass
class Fence:
    """The threshold of one issue: flag where ``property`` is below (``side`` "low") or above
    ("high") ``value``; ``q1``, ``q3`` and ``spread`` are what it was computed from."""

    issue: str
    property: str
    side: str
    value: float
    q1: float
    q3: float
    spread: float


def fences(props: dict[str, Tensor], factor: float = 3.0) -> dict[str, Fence]:
    """One :class:`Fence` per issue in :data:`FENCED` from properties (N,) of the training sample."""
    out = {}
    for issue, (prop, side) in FENCED.items():
        v = props[prop].double()
        if len(v) == 0:
            continue
        q = torch.quantile(v, torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64)).tolist()
        spread = max(q[2] - q[1], (q[3] - q[0]) / 4)
        value = q[1] - factor * spread if side == "low" else q[2] + factor * spread
        out[issue] = Fence(issue, prop, side, float(value), q[1], q[2], float(spread))
    return out


def flag(props: dict[str, Tensor], limits: dict[str, Fence]) -> dict[str, Tensor]:
    """Bool (N,) per issue: strictly beyond its fence; plus ``grayscale`` from the properties."""
    out = {}
    for issue, f in limits.items():
        v = props[f.property]
        out[issue] = v < f.value if f.side == "low" else v > f.value
    out["grayscale"] = props["grayscale"].bool()
    return out
