"""The smallest strength that changes a prediction, by hand."""

from __future__ import annotations

import torch

from stresslab.metrics.flips import first_change


def test_first_change_by_hand() -> None:
    clean = torch.tensor([0, 1, 2, 3])
    steps = [
        (2.0, "blur", torch.tensor([0, 2, 1, 3])),  # images 1 and 2 change at 2
        (1.0, "noise", torch.tensor([0, 1, 0, 3])),  # image 2 changes at 1
        (2.0, "fog", torch.tensor([5, 1, 2, 3])),  # image 0 changes at 2, after blur in order
        (3.0, "blur", torch.tensor([0, 0, 0, 3])),
    ]
    strength, name = first_change(clean, steps)
    assert strength == [2.0, 2.0, 1.0, None]
    assert name == ["fog", "blur", "noise", None]
    # At equal strength the first listed change names it.
    _, name = first_change(clean[:1], [(1.0, "a", torch.tensor([4])), (1.0, "b", torch.tensor([5]))])
    assert name == ["a"]
    assert first_change(torch.empty(0, dtype=torch.long), []) == ([], [])
