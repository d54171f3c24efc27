"""A run's model back from its checkpoint, and what it costs: parameters and FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stresslab.data.base import DatasetInfo
from stresslab.errors import CheckpointError
from stresslab.files import read_json
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint, load_weights
from stresslab.scoped import inference_scope


def final_checkpoint(run_dir: str | Path) -> Path:
    """The weights the run's probes used: ``training.json``'s ``final_weights`` (best.pt by default)."""
    run = Path(run_dir)
    name = "best.pt"
    if (run / "training.json").is_file():
        name = str(read_json(run / "training.json").get("final_weights", name))
    path = run / "checkpoints" / name
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    return path


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The run's final model in eval mode on the CPU, and its checkpoint metadata.

    Loads with ``weights_only=True`` (:func:`load_checkpoint`); the normalization layer's
    statistics come from the checkpoint's weights.
    """
    path = final_checkpoint(run_dir)
    ckpt = load_checkpoint(path)
    model_rec = ckpt.get("model") or {}
    names = tuple(ckpt.get("class_names") or ())
    channels = int(ckpt.get("channels") or 1)
    h, w = (int(v) for v in ckpt.get("image_size") or (28, 28))
    info = DatasetInfo("checkpoint", names, channels, h, w, (0.5,) * channels, (0.5,) * channels)
    model = build_model(str(model_rec.get("name")), info, model_rec.get("args"), model_rec.get("source"))
    load_weights(model, ckpt["state_dict"], path)
    model.eval()
    return model, {"channels": channels, "height": h, "width": w, "class_names": names}


def model_cost(model: nn.Module, channels: int, height: int, width: int) -> dict[str, float]:
    """``params`` (count) and ``flops`` of one forward pass on one (1, C, H, W) image, as
    counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs;
    convolutions and matrix products only)."""
    x = torch.zeros(1, channels, height, width)
    counter = FlopCounterMode(display=False)
    with inference_scope(model), torch.no_grad(), counter:
        model(x)
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "flops": float(counter.get_total_flops()),
    }
