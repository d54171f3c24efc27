"""The corruption probe's per-image record: the smallest severity that changes a prediction."""

from __future__ import annotations

from dataclasses import replace

import torch

from stresslab.corruptions import CORRUPTIONS
from stresslab.data.base import to_float
from stresslab.probes.corruption import CorruptionProbe
from stresslab.probes.predictions import Predictions
from tests.corruptions.test_corruptions import make_ctx


def test_smallest_severity_that_changes_each_prediction() -> None:
    ctx = make_ctx(n_test=24, channels=1)
    with torch.no_grad():  # a head sensitive enough that some predictions change
        ctx.model.head.bias.zero_()
        ctx.model.head.weight.mul_(50.0)
    p = ctx.split
    ctx = replace(
        ctx, predictions=Predictions.compute(ctx.model, p.test_x, p.test_y, p.test_index, batch_size=8)
    )
    names, severities = ["contrast", "brightness"], [1, 3, 5]  # both deterministic
    res = CorruptionProbe(corruptions=names, severities=severities, max_images=24, resolution=[]).run(ctx)
    sev, which = res.data["flip_severity"], res.data["flip_corruption"]
    assert len(sev) == len(which) == len(res.data["test_index"]) == 24
    pos = {int(i): p for p, i in enumerate(ctx.split.test_index.tolist())}
    x = to_float(ctx.split.test_x[torch.tensor([pos[i] for i in res.data["test_index"]])])
    ctx.model.eval()
    with torch.no_grad():
        clean = ctx.model(x).argmax(1)
        changed = {
            (s, n): ctx.model(CORRUPTIONS.get(n)(x, s, torch.Generator())).argmax(1) != clean
            for s in severities
            for n in names
        }
    for j in range(24):
        first = next(((s, n) for s in severities for n in names if bool(changed[(s, n)][j])), None)
        assert (sev[j], which[j]) == (first if first is not None else (None, None))
    assert any(s is not None for s in sev) and any(s is None for s in sev)
