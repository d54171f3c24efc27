"""The smallest strength of a change (corruption severity, attack epsilon) that changes a prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def first_change(
    clean: Tensor, steps: Sequence[tuple[float, str, Tensor]]
) -> tuple[list[float | None], list[str | None]]:
    """Per image, the smallest strength at which its prediction differs from the clean one.

    Args:
        clean: (n,) int64 predicted classes on the clean images.
        steps: ``(strength, name, preds)`` with ``preds`` (n,) int64 the predictions under the
            change ``name`` at ``strength`` (any unit: severity 1-5, epsilon in pixel units);
            in any order. At equal strength the first step in ``steps`` names the change.

    Returns:
        Two lists of length n: the strength and the name of the change that first altered the
        prediction, ``None`` for an image no step changed (robust up to the largest strength).
    """
    n = len(clean)
    strength: list[float | None] = [None] * n
    name: list[str | None] = [None] * n
    open_ = torch.ones(n, dtype=torch.bool)
    order = sorted(range(len(steps)), key=lambda i: steps[i][0])  # stable: ties keep their order
    for i in order:
        s, label, preds = steps[i]
        changed = open_ & (preds.cpu() != clean.cpu())
        for p in torch.nonzero(changed).flatten().tolist():
            strength[p], name[p] = float(s), label
        open_ &= ~changed
    return strength, name
