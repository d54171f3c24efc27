"""Learning-rate schedules as a multiplier of the peak learning rate, per optimizer step.

Every schedule shares the same linear warmup: over the first ``warmup_steps`` steps the
factor rises as ``(step + 1) / warmup_steps``, reaching 1 at the last warmup step. After it:

- ``constant``: 1.
- ``cosine``: ``final + (1 - final) * (1 + cos(pi * t)) / 2`` (Loshchilov and Hutter 2017,
  SGDR, without restarts).
- ``linear``: ``final + (1 - final) * (1 - t)``, the triangular one-cycle shape of Smith and
  Topin (2019, "Super-Convergence") and of airbench (Jordan 2024), which anneals to the end.

where ``t = (step - warmup_steps) / (total_steps - warmup_steps)`` in [0, 1) runs over the
steps after warmup and ``final`` is ``final_fraction``, the factor the schedule tends to at
the very end.
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "cosine", "linear"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, schedule: str, final_fraction: float = 0.0
) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based) of ``total_steps``.

    Args:
        step: steps taken so far (``LambdaLR`` passes its step count), >= 0.
        total_steps: steps in the whole run (epochs x steps per epoch).
        warmup_steps: steps of linear warmup (0: none).
        schedule: ``constant``, ``cosine`` or ``linear`` (see the module docstring).
        final_fraction: factor in [0, 1] the decay tends to at the end of the run.

    Returns:
        A factor in [0, 1].

    Raises:
        ValueError: an unknown ``schedule`` or a ``final_fraction`` outside [0, 1].
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * t)) if schedule == "cosine" else 1.0 - t
    return final_fraction + (1.0 - final_fraction) * shape
