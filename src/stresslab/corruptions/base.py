"""The corruption contract and its registry.

A corruption is a function ``(x, severity, generator) -> Tensor``: ``x`` is a float
batch (N, C, H, W) in [0, 1] with C = 1 or 3; ``severity`` an int in 1..5; every random
draw comes from ``generator`` (a ``torch.Generator`` on any device), so one seed gives one
result. The output has the shape, dtype and device of ``x`` and lies in [0, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from stresslab.registry import Registry

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


class CorruptionFn(Protocol):
    """``(x (N, C, H, W) float in [0, 1], severity 1..5, generator) -> same shape in [0, 1]``."""

    def __call__(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor: ...


CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")


def check_input(x: Tensor, severity: int) -> None:
    """Raise ``ValueError`` unless ``x`` is float (N, C, H, W) with C in {1, 3} and severity in 1..5."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"corruptions take images (N, C, H, W) with C = 1 or 3; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"corruptions take float images in [0, 1]; got dtype {x.dtype}")
    if isinstance(severity, bool) or int(severity) != severity or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5; got {severity!r}")


def register_corruption(name: str) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator: register a corruption under ``name``, enforcing the contract around it.

    The wrapped function sees a float32 tensor; its output is clamped to [0, 1] and cast
    back to the input dtype, so every corruption keeps shape, dtype, device and range.
    """

    def deco(fn: CorruptionFn) -> CorruptionFn:
        @functools.wraps(fn)
        def wrapped(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
            check_input(x, severity)
            if x.shape[0] == 0:
                return x.clone()
            out = fn(x.float(), int(severity), generator)
            return out.clamp_(0.0, 1.0).to(x.dtype)

        CORRUPTIONS.register(name)(wrapped)
        return wrapped

    return deco


def corrupt(x: Tensor, name: str, severity: int, generator: torch.Generator) -> Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to float images (N, C, H, W) in [0, 1]."""
    return CORRUPTIONS.get(name)(x, severity, generator)
