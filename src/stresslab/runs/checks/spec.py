"""What a ``checks:`` section holds: conditions on metric keys, on warnings, and the rules
a new model must meet against a baseline run.

A ``checks:`` section (or a ``--checks FILE`` holding the same mapping)::

    evaluation.accuracy: ">= 0.92"
    calibration.ece: "<= 0.05"
    evaluation.class.*.recall: ">= 0.8"    # a wildcard: one check per class
    warnings: none                        # or a list of kinds: [adversarial, training]
    baseline: runs/released               # or a mapping, see BaselineRules

Keys other than ``warnings`` and ``baseline`` are metric keys (``probe.metric``, as in
``metrics.json``, plus ``evaluation.class.<class>.<accuracy|precision|recall|f1|support>``);
``*`` and ``?`` match any characters.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from stresslab.settings import Strict

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
RESERVED = ("warnings", "baseline")


@dataclass(frozen=True)
class Condition:
    """``value OP bound``, e.g. ``>= 0.92``: :meth:`holds` is False for NaN values."""

    op: str
    bound: float

    @classmethod
    def parse(cls, text: Any, key: str = "") -> Condition:
        """Parse ``">= 0.92"`` (operators >=, <=, >, <, ==, !=); errors name ``key`` and the text."""
        m = _CONDITION.match(str(text)) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"{key}: condition {text!r} is not 'OP NUMBER' with OP one of {', '.join(OPERATORS)} "
                '(quote it in YAML: ">= 0.9")'
            )
        return cls(m.group(1), float(m.group(2)))

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and OPERATORS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


class BaselineRules(Strict):
    """How a run must compare with ``run`` (a run directory) on the same test images.

    Each bound may be ``null`` to leave its check out. ``alpha``: the new model fails when it
    is less accurate and the exact McNemar test (two-sided) gives p < alpha.
    ``max_negative_flip_rate``: images the baseline gets right and the new model wrong, as a
    share of all test images (Yan et al. 2021). ``max_confident_broken``: such images the new
    model gets wrong with confidence >= ``confidence``. ``max_class_drop``: the largest loss
    of one class's accuracy, in percentage points. ``max_ece_increase``: ECE (15 equal-width
    bins, from the saved predictions) may grow by at most this much.
    """

    run: str
    alpha: float | None = Field(0.05, gt=0.0, lt=1.0)
    max_negative_flip_rate: float | None = Field(0.05, ge=0.0, le=1.0)
    confidence: float = Field(0.9, gt=0.0, le=1.0)
    max_confident_broken: int | None = Field(0, ge=0)
    max_class_drop: float | None = Field(5.0, ge=0.0)
    max_ece_increase: float | None = Field(0.02, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _path_alone(cls, v: Any) -> Any:
        return {"run": v} if isinstance(v, str) else v


def _dotted(tree: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    # `--set checks.evaluation.accuracy=...` arrives nested; conditions are keyed flat.
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(_dotted(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out


class ChecksConfig(Strict):
    """A parsed ``checks:`` section; see the module docstring. Empty: no checks."""

    conditions: dict[str, str] = Field(default_factory=dict)
    warnings: str | list[str] | None = None
    baseline: BaselineRules | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, v: Any) -> Any:
        # Written flat (metric keys beside `warnings` and `baseline`); dumped with `conditions`.
        if not isinstance(v, dict) or "conditions" in v:
            return v
        out: dict[str, Any] = {k: v[k] for k in RESERVED if k in v}
        out["conditions"] = _dotted({k: c for k, c in v.items() if k not in RESERVED})
        return out

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: dict[str, str]) -> dict[str, str]:
        for key, text in v.items():
            Condition.parse(text, key)
        return v

    @field_validator("warnings")
    @classmethod
    def _warnings(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, str) and v != "none":
            raise ValueError(f"warnings: expected 'none' or a list of kinds, got {v!r}")
        return v

    @property
    def empty(self) -> bool:
        return not self.conditions and self.warnings is None and self.baseline is None

    def parsed(self) -> dict[str, Condition]:
        """Metric key (or pattern) -> its :class:`Condition`."""
        return {k: Condition.parse(t, k) for k, t in self.conditions.items()}
