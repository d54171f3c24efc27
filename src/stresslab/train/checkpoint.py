"""Training checkpoints: written atomically, with the random states that make resume exact."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.errors import CheckpointError
from stresslab.files import atomic_write_bytes
from stresslab.models.weights import FORMAT, VERSION


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: dict[str, Any], state_dict: dict[str, Tensor] | None = None
) -> None:
    """Write ``{format, version, state_dict, **meta}`` atomically.

    ``meta`` holds plain data and tensors only (model name/args/source, class names,
    channels, image size, config, epoch, optimizer/scheduler/RNG states, history), so the
    file loads with ``weights_only=True``. The weights are ``model``'s, or ``state_dict``
    when given (the raw weights while ``model`` holds their average). Non-finite weights are
    refused.
    """
    source = model.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().cpu() for k, v in source.items()}
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"refusing to save: {name} holds non-finite values")
    payload = {"format": FORMAT, "version": VERSION, "state_dict": state, **meta}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def rng_states(generators: dict[str, torch.Generator], cuda: bool) -> dict[str, torch.Tensor]:
    """The states of named generators (on CPU) plus torch's global CPU RNG (and the CUDA
    one when ``cuda``), as ``last.pt`` stores them for a resume that draws the same numbers."""
    states = {name: g.get_state().cpu() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()
    if cuda:
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(
    states: dict[str, torch.Tensor], generators: dict[str, torch.Generator], cuda: bool
) -> None:
    """Restore what :func:`rng_states` saved into ``generators`` (each on its own device)."""
    for name, g in generators.items():
        g.set_state(states[name].to(g.get_state().device))
    torch.set_rng_state(states["torch"])
    if cuda and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"])
