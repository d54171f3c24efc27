"""Scoped mode and gradient pins: a frozen encoder for linear evaluation, dropout off for
contrastive pretraining. Everything is undone on exit."""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

from torch import nn

from stresslab.errors import ConfigError

DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


@contextmanager
def pinned_eval(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Inside the block each of ``modules`` stays in eval mode whatever ``train()`` asks (of it
    or of a module above it); on exit their ``train`` methods and modes are as they were."""
    pinned = list(modules)
    modes = [m.training for m in pinned]
    for m in pinned:
        m.train = types.MethodType(_stay_eval, m)  # type: ignore[method-assign]
        nn.Module.train(m, False)
    try:
        yield
    finally:
        for m, mode in zip(pinned, modes, strict=True):
            del m.train
            m.training = mode


@contextmanager
def frozen_encoder(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every parameter outside ``model.head`` is frozen (``requires_grad``
    False) and every module outside the head stays in eval mode whatever ``model.train()``
    says, so BatchNorm statistics and dropout of the encoder do not change: the head learns on
    fixed features (the linear evaluation of Chen et al. 2020, SimCLR, section 4). Both are
    undone on exit (flags and modes as they were), even after an exception.

    Raises:
        ConfigError: the model has no ``head`` module.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module) or not list(head.parameters()):
        raise ConfigError("a linear probe after pretraining needs a model with a trainable `head` layer")
    in_head = {id(m) for m in head.modules()}
    above_head = {id(m) for m in model.modules() if any(s is head for s in m.modules())}
    head_params = {id(p) for p in head.parameters()}
    params = [p for p in model.parameters() if id(p) not in head_params]
    flags = [p.requires_grad for p in params]
    # Modules above the head (the model itself) must still pass train() down to the head.
    pinned = [m for m in model.modules() if id(m) not in in_head and id(m) not in above_head]
    for p in params:
        p.requires_grad_(False)
    try:
        with pinned_eval(pinned):
            yield model
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def dropout_off(model: nn.Module) -> AbstractContextManager[None]:
    """:func:`pinned_eval` on every dropout layer of ``model``."""
    return pinned_eval(m for m in model.modules() if isinstance(m, DROPOUT))
