"""``stresslab.probe``'s inputs: every accepted layout and type becomes the data contract, and
every bad argument is refused before any work, by an error that names it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import stresslab
from stresslab.errors import ConfigError, DataError
from stresslab.runs.inputs import as_images, as_labels, as_pair

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, size=(12, 8, 8, 1), dtype=np.uint8)  # NHWC
Y = np.arange(12) % 3


def conv_net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, classes))


def test_layouts_and_types_become_nchw() -> None:
    nchw = torch.from_numpy(X).permute(0, 3, 1, 2)
    assert torch.equal(as_images(X, "test"), nchw)  # NHWC numpy
    assert torch.equal(as_images(nchw.contiguous(), "test"), nchw)  # NCHW tensor
    assert torch.equal(as_images(X[..., 0], "test"), nchw)  # NHW
    assert torch.equal(as_images(X.astype(np.int64), "test"), nchw)  # integers in 0..255
    floats = as_images(nchw.float() / 255.0, "test")
    assert floats.dtype == torch.float32 and torch.equal(floats, nchw.float() / 255.0)  # kept exactly
    rgb = RNG.integers(0, 256, size=(2, 3, 5, 3), dtype=np.uint8)  # both axes could be channels
    assert as_images(rgb, "x").shape == (2, 3, 3, 5)  # NumPy: NHWC
    assert as_images(torch.from_numpy(rgb), "x").shape == (2, 3, 5, 3)  # torch: NCHW
    readonly = X.copy()
    readonly.setflags(write=False)
    assert torch.equal(as_images(readonly, "test"), nchw)
    assert torch.equal(as_labels(Y.reshape(-1, 1), "test"), torch.from_numpy(Y))
    # uint8 NCHW tensors (what stresslab's loaders give) and float32 are used in place, not copied.
    same = nchw.contiguous()
    assert as_images(same, "test").data_ptr() == same.data_ptr()
    f32 = same.float() / 255.0
    assert as_images(f32, "test").data_ptr() == f32.data_ptr()
    half = as_images(f32.bfloat16(), "test")  # NumPy has no bfloat16: made float32
    assert half.dtype == torch.float32 and torch.allclose(half, f32, atol=4e-3)
    assert as_labels([0, 2, 1], "test").tolist() == [0, 2, 1]


def test_a_dataset_of_pil_images_or_tensors() -> None:
    from PIL import Image

    pil = [(Image.fromarray(X[i, :, :, 0]), int(Y[i])) for i in range(len(Y))]
    x, y = as_pair(pil, "train")
    assert torch.equal(x, torch.from_numpy(X).permute(0, 3, 1, 2)) and y.tolist() == Y.tolist()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X).permute(0, 3, 1, 2), torch.from_numpy(Y))
    x2, y2 = as_pair(ds, "train")
    assert torch.equal(x2, x) and torch.equal(y2, y)


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"test": (X, np.where(Y == 2, 7, Y))}, DataError, r"test: 4 label\(s\) outside 0\.\.2 .*found 7"),
    ({"test": (X[:10], Y[:9])}, DataError, "test: 10 images but 9 labels"),
    ({"test": (X[None], Y)}, DataError, r"test: images must be .*5-D"),
    ({"test": (X.astype(np.float32), Y)}, DataError, r"test: float images must be in \[0, 1\], found 0\.\.2"),
    ({"test": (X / 255.0 - 0.5, Y)}, DataError, r"test: float images .*normalize=\(mean, std\)"),
    ({"test": (np.full((4, 8, 8), np.nan), Y[:4])}, DataError, "test: images hold NaN"),
    ({"test": (np.full((4, 8, 8), np.inf), Y[:4])}, DataError, "test: images hold NaN or infinite"),
    ({"test": (X.astype(np.int16) * 2, Y)}, DataError, r"test: integer images must be in 0\.\.255"),
    ({"test": (X.repeat(4, axis=3), Y)}, DataError, "test: images of shape .*no channel axis"),
    ({"test": (X, Y.astype(np.float32))}, DataError, "test: labels must be integer class indices"),
    ({"test": (X, np.eye(3)[Y].astype(int))}, DataError, r"test: labels .*y\.argmax\(1\)"),
    ({"test": (X, Y - 1)}, DataError, "test: labels must be >= 0"),
    ({"test": (X, Y, Y)}, DataError, "test: expected a pair"),
    ({"test": X}, DataError, "test: expected .*got ndarray"),
    ({"test": (X.tolist(), Y)}, DataError, "test: images: expected a numpy array or a torch tensor"),
    ({"train": (X[:, :4], Y)}, DataError, r"train: images are \(1, 4, 8\)"),
    ({"val": (X, Y + 1)}, DataError, r"val: 4 label\(s\) outside 0\.\.2"),
    ({"train": [(X[0], 0), (X[1, :4], 1)]}, DataError, r"train\[1\]: image of shape"),
    ({"train": [(X[0], 0.5)]}, DataError, r"train\[0\]: the label must be an integer"),
    ({"model": "resnet18"}, ConfigError, "model: expected a torch.nn.Module"),
    ({"class_names": ["a", "b"]}, ConfigError, "class_names: 2 names, but the model gives 3 logits"),
    ({"class_names": "abc"}, ConfigError, "class_names: expected a list of 3 names"),
    ({"model": nn.Identity()}, ConfigError, r"model: expected logits of shape \(2, K\)"),
    ({"model": lambda x: x.sum()}, ConfigError, "model: expected logits"),
    ({"model": lambda x: x.view(3, -1)}, ConfigError, "model: the forward pass .* failed"),
    ({"normalize": ([0.5, 0.5], [0.2, 0.2])}, ConfigError, "normalize: mean has 2 values for 1-channel"),
    ({"normalize": (0.5, 0.0)}, ConfigError, r"normalize: std must be > 0"),
    ({"normalize": "imagenet"}, ConfigError, r"normalize: expected \(mean, std\)"),
    ({"batch_size": 0}, ConfigError, "batch_size: expected a positive integer"),
    ({"background": 255}, ConfigError, r"background: expected a pixel value in \[0, 1\]"),
    ({"probes": "quik"}, ConfigError, "probes: 'quik' is neither a preset"),
    ({"probes": {"failures": {"treshold": 0.5}}}, ConfigError, r"failures\.treshold: unknown setting"),
    ({"device": "cuda:7" if torch.cuda.is_available() else "cuda"}, ConfigError, "device: "),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], match: str, tmp_path: Path
) -> None:
    args: dict[str, Any] = {"model": conv_net(), "test": (X, Y), "out": tmp_path / "run"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        model, test = args.pop("model"), args.pop("test")
        stresslab.probe(model, test, probes=args.pop("probes", ["evaluation"]), **args)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_grad_cam_without_a_conv_layer_names_the_candidates(tmp_path: Path) -> None:
    pooled = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    explain = {"explain": {"methods": ["gradcam", "saliency"]}}
    with pytest.raises(ConfigError, match=r"model: Grad-CAM explains a conv layer .*output.*: 0; name one"):
        stresslab.probe(pooled, (X, Y), probes=explain)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ConfigError, match=r"no layer gives a spatial .* leave gradcam out"):
        stresslab.probe(mlp, (X, Y), probes=explain)
    missing = {"explain": {"methods": {"gradcam": {"layer": "conv9"}}}}
    named = r"probes\.explain\.methods\.gradcam\.layer: .*no layer 'conv9'.*: 0, 1, 2"
    with pytest.raises(ConfigError, match=named):
        stresslab.probe(conv_net(), (X, Y), probes=missing)
    assert not (tmp_path / "run").exists()


def test_a_plain_module_is_explained_at_the_layer_named_in_its_own_terms(tmp_path: Path) -> None:
    settings = {"methods": {"gradcam": {"layer": "0"}}, "n_high_confidence": 1, "n_uncertain": 1}
    probes = {"explain": {**settings, "n_correct_per_class": 0, "random_maps": 1, "curve_steps": 4}}
    run = stresslab.probe(conv_net(), (X, Y), probes=probes, out=tmp_path / "run")
    assert not run.failed_probes, run.results["explain"].warnings
    record = json.loads((tmp_path / "run" / "results" / "explain.json").read_text())
    assert "body.0" in json.dumps(record["data"]["settings"])
