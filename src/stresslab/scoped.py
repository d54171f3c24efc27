"""Scoped model state: whatever a probe does, the model leaves as it came in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def inference_scope(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with parameters frozen; restore both on exit.

    Parameter ``.grad`` tensors are restored too, so attribution or attack gradients
    taken inside never leak into training state (even if an exception is raised).
    """
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        model.train(was_training)
