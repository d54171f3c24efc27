"""Scoped model state: whatever a probe or an attack does, the model leaves as it came in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def inference_scope(
    model: nn.Module, *, eval_mode: bool = True, restore_buffers: bool = False
) -> Iterator[nn.Module]:
    """Freeze ``model``'s parameters for the block (and by default put it in eval mode).

    On exit every parameter's ``requires_grad`` and ``.grad`` are restored, so attribution
    or attack gradients taken inside never leak into training state (even if an exception
    is raised); with ``eval_mode`` the model's train/eval mode is put back on exit.

    Args:
        model: any module.
        eval_mode: ``True`` (probes): eval mode inside the block. ``False`` (attacks, and
            adversarial examples made during training): the mode is never touched, so a
            model in train mode normalizes with the batch's statistics.
        restore_buffers: also put every buffer (e.g. BatchNorm running statistics) back as
            it was, so train-mode forward passes inside leave no trace.
    """
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    saved = [(b, b.detach().clone()) for b in model.buffers()] if restore_buffers else []
    if eval_mode:
        model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        if eval_mode:
            model.train(was_training)
