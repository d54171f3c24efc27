"""TensorBoard: per-epoch scalars, the final metrics, the report's figures and the config as
hyperparameters, written with ``torch.utils.tensorboard.SummaryWriter``.

Tags: ``epoch/<key>`` for each ``history.json`` value (step = epoch), ``<probe>/<metric>``
for each ``metrics.json`` value and ``<probe>/<figure>`` for each figure (step = the last
epoch), ``hparam/<probe>.<metric>`` in the HParams dashboard next to the flattened config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stresslab.runs.tracking.base import finite, flat_config, require, run_label

if TYPE_CHECKING:
    from stresslab.runs.config import RunConfig, TrackingConfig
    from stresslab.runs.directory import RunDir


def tensorboard_dir(cfg: TrackingConfig, run: RunDir) -> Path:
    """The run's event folder: ``RUN_DIR/tensorboard`` by default; with a ``group``,
    ``<tensorboard_dir or RUN_DIR/../tensorboard>/<group>/<run name>`` so that one
    ``tensorboard --logdir`` shows every run of the group side by side; with only
    ``tensorboard_dir``, ``<tensorboard_dir>/<run name>``."""
    if not cfg.group and not cfg.tensorboard_dir:
        return Path(run.path) / "tensorboard"
    base = (
        Path(cfg.tensorboard_dir) if cfg.tensorboard_dir else Path(run.path).resolve().parent / "tensorboard"
    )
    return base / (cfg.group or "") / run_label(cfg, run)


class TensorBoardTracker:
    """Writes one run's events under :func:`tensorboard_dir` (see the module docstring)."""

    name = "TensorBoard"

    def __init__(self, cfg: RunConfig, run: RunDir) -> None:
        writer_cls = require("torch.utils.tensorboard", "tensorboard", "tracking.tensorboard").SummaryWriter
        self.logdir = tensorboard_dir(cfg.tracking, run)
        self.writer = writer_cls(log_dir=str(self.logdir))
        self.hparams = flat_config(cfg)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in self.hparams.items()))
        self.writer.flush()

    def log_epoch(self, record: dict[str, float]) -> None:
        """Scalars ``epoch/<key>`` at step ``record["epoch"]``."""
        step = int(record.get("epoch", 0))
        for key, value in finite(record).items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.writer.flush()

    def finish(self, run: RunDir, metrics: dict[str, float]) -> None:
        """Final metrics as scalars, every figure of ``RUN_DIR/results`` as an image, and the
        config with the metrics as one HParams session; all at step = the last epoch."""
        from PIL import Image

        step = len(json.loads(run.history.read_text())) if run.history.is_file() else 0
        values = finite(metrics)
        for key, value in values.items():
            probe, _, metric = key.partition(".")
            self.writer.add_scalar(f"{probe}/{metric}" if metric else key, value, step)
        for png in sorted(Path(run.results).rglob("*.png")):
            tag = png.relative_to(run.results).with_suffix("").as_posix()
            with Image.open(png) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(tag, pixels, step, dataformats="HWC")
        # run_name "." keeps the HParams session in this run's own folder.
        self.writer.add_hparams(
            dict(self.hparams), {f"hparam/{k}": v for k, v in values.items()}, run_name=".", global_step=step
        )
        self.writer.flush()

    def close(self, status: str) -> None:
        """Flush and close the event files (``status`` is not recorded by TensorBoard)."""
        self.writer.close()
