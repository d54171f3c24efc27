"""Checkpoints: atomic writes, safe loads (``weights_only=True``), mismatches spelled out."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import CheckpointError
from stresslab.rundir import atomic_write_bytes

FORMAT = "stresslab-checkpoint"
VERSION = 1


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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: nothing pickled is ever executed.

    A ``.safetensors`` file gives ``{"state_dict": ...}`` only. A plain state dict saved
    by ``torch.save(model.state_dict())`` is accepted as ``{"state_dict": ...}``.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return {"state_dict": load_file(str(p))}
        except Exception as e:  # safetensors raises several types for corrupt headers
            raise CheckpointError(f"{p}: not a valid safetensors file: {e}") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{p}: refused: loading it would need to run pickled code, which is never done "
            f"(only tensors and plain data are allowed). Detail: {first}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{p}: not a readable checkpoint (truncated or corrupt?): {e}") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj
    raise CheckpointError(f"{p}: not a stresslab checkpoint or a state dict")


def check_compatible(ckpt: dict[str, Any], model_name: str, info: DatasetInfo, path: str | Path) -> None:
    """Refuse a checkpoint whose model, class count or channels differ from the run's."""
    problems = []
    name = ckpt.get("model", {}).get("name") if isinstance(ckpt.get("model"), dict) else None
    if name is not None and name != model_name:
        problems.append(f"architecture: checkpoint has {name!r}, config asks for {model_name!r}")
    classes = ckpt.get("class_names")
    if classes is not None and len(classes) != info.num_classes:
        problems.append(f"classes: checkpoint has {len(classes)}, data has {info.num_classes}")
    channels = ckpt.get("channels")
    if channels is not None and int(channels) != info.channels:
        problems.append(f"channels: checkpoint has {channels}, data has {info.channels}")
    if problems:
        raise CheckpointError(f"{path}: does not match this run:\n  " + "\n  ".join(problems))


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load weights strictly; missing, unexpected and mis-shaped keys are listed."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(
                f"unexpected keys: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
            )
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes[:8]))
        raise CheckpointError(f"{path}: weights do not fit the model:\n  " + "\n  ".join(parts))
    model.load_state_dict(state_dict)
