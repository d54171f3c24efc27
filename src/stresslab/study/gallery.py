"""Test images for the study's galleries, their thumbnails, and Grad-CAM side by side.

Images are looked up by official test-set index. They are kept in
``STUDY_DIR/gallery_images.npz`` once loaded, so a report can be rebuilt from the study
directory alone; only images not stored there are read from the dataset (with the
baseline run's data config).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stresslab.errors import StresslabError
from stresslab.files import atomic_write_bytes
from stresslab.runs.directory import RunDir
from stresslab.study.plan import StudyDir

log = logging.getLogger(__name__)


def _read_store(path: Path) -> dict[int, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {int(i): img for i, img in zip(z["index"], z["images"], strict=True)}


def test_images(sdir: StudyDir, run_dir: Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """uint8 images (C, H, W) by test index; missing ones are loaded from the dataset of
    ``run_dir``'s config and stored. Returns what could be found (a warning says what not)."""
    store = _read_store(sdir.images)
    missing = sorted({int(i) for i in indices} - set(store))
    if missing:
        try:
            from stresslab.runs import config as config_mod
            from stresslab.runs.execute import load_data

            cfg = config_mod.resolve(RunDir(run_dir).config)
            split = load_data(cfg)
            pos = {int(i): k for k, i in enumerate(split.test_index.tolist())}
            for i in missing:
                if i in pos:
                    store[i] = split.test_x[pos[i]].numpy()
            buf = io.BytesIO()
            keys = sorted(store)
            np.savez_compressed(
                buf, index=np.array(keys, dtype=np.int64), images=np.stack([store[k] for k in keys])
            )
            atomic_write_bytes(sdir.images, buf.getvalue())
        except (StresslabError, OSError) as e:
            log.warning("gallery images unavailable (%s); galleries show indices only", e)
    return {int(i): store[int(i)] for i in indices if int(i) in store}


def thumbnail(image: np.ndarray, size: int = 56) -> str:
    """A PNG data URI of a uint8 image (C, H, W), scaled up with nearest neighbours to ``size``."""
    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    img = Image.fromarray(np.ascontiguousarray(arr))
    scale = max(1, size // max(img.size))
    img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gradcam_maps(run_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM (``gradcam`` from the ``ATTRIBUTIONS`` registry, the model's own layer) of the run's
    final model for its predicted class on uint8 images (N, C, H, W).

    Returns maps (N, H, W) float32, predicted classes (N,) and their probabilities (N,).
    """
    from stresslab.attributions import ATTRIBUTIONS
    from stresslab.runs.loaded import load_model

    model, _ = load_model(RunDir(run_dir))
    x = torch.from_numpy(images).float() / 255.0
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    conf, pred = probs.max(dim=1)
    maps = ATTRIBUTIONS.build("gradcam").attribute(model, x, pred)
    return maps.numpy(), pred.numpy(), conf.numpy()
