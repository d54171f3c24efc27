"""Exact-duplicate hashing in chunks, with a callback between chunks."""

from __future__ import annotations

import pytest
import torch

from stresslab.metrics import duplicates
from stresslab.metrics.duplicates import exact_duplicates, exact_groups, image_hashes


def test_hashing_in_chunks_calls_release_and_finds_the_same_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10, 3, 4, 4), generator=g, dtype=torch.uint8)
    x[7] = x[2]
    x[9] = x[2]
    whole = image_hashes(x)
    monkeypatch.setattr(duplicates, "HASH_CHUNK", 3)
    calls: list[int] = []
    assert image_hashes(x, lambda: calls.append(1)) == whole
    assert len(calls) == 4  # chunks of 3, 3, 3 and 1 images
    assert exact_groups(x, lambda: None) == [[2, 7, 9]]
    pairs = exact_duplicates(x[:5], x[5:], lambda: calls.append(1))
    assert [(p.test, p.train) for p in pairs] == [(2, 2), (4, 2)]
    assert len(calls) == 4 + 4  # 5 training and 5 test images: two chunks each
