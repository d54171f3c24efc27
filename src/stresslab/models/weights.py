"""Weights from disk: safe loads (``weights_only=True``), mismatches spelled out."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import CheckpointError

FORMAT = "stresslab-checkpoint"
VERSION = 1


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
