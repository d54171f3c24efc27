"""``stresslab run --checkpoint MODEL --data-root DIR``: a trained model probed on a folder of
test images alone, its classes matched by name, the probes that need training images skipped
with their reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import stresslab
from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models import build_model
from stresslab.models.preprocessing import hub_preprocessing
from stresslab.runs.from_checkpoint import checkpoint_base
from stresslab.train.checkpoint import save_checkpoint
from tests.cli_helpers import invoke, run_ok

CLASSES = ["t-shirt/top", "trouser", "bag"]
ARGS = {"widths": [4, 8], "fc": 16}
# Fast settings of the probes that run on test images alone, and three that need training images.
PROBES = {
    "evaluation": {},
    "failures": {"gallery_size": 4, "n_uncertain": 2},
    "calibration": {},
    "explain": {
        "n_high_confidence": 1,
        "n_uncertain": 1,
        "n_correct": 1,
        "methods": {"saliency": {}},
        "curve_steps": 4,
        "random_maps": 1,
        "cases_per_figure": 2,
        "quality_images": 8,
    },
    "label_issues": {},
    "representation": {},
    "data_audit": {},
}


def _checkpoint(path: Path, name: str = "custom_cnn", args: dict | None = None, size: int = 12) -> Path:
    """A stresslab checkpoint of an untrained model for ``CLASSES`` on ``size`` px RGB images."""
    info = DatasetInfo("x", tuple(CLASSES), 3, size, size, (0.4,) * 3, (0.2,) * 3)
    torch.manual_seed(0)
    model = build_model(name, info, args if args is not None else ARGS)
    meta = {
        "model": {"name": name, "args": args if args is not None else ARGS, "source": None},
        "class_names": CLASSES,
        "channels": 3,
        "image_size": [size, size],
        "config": {"data": {"dataset": "fashion_mnist"}},
    }
    save_checkpoint(path, model, meta)
    return path


def _test_folder(root: Path, folders: dict[str, int], per_class: int = 6) -> Path:
    """``root/test/<folder>/`` PNGs of mixed sizes; each folder's images a class-specific grey."""
    rng = np.random.default_rng(0)
    sizes = ((20, 14), (12, 12), (9, 17))
    for folder, level in folders.items():
        (root / "test" / folder).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % 3]
            arr = np.clip(rng.normal(level, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / "test" / folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_a_checkpoint_probed_on_a_test_folder(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    # Two of the model's three classes, in another order, one named by the '/' -> '_' rule.
    data = _test_folder(tmp_path / "photos", {"trouser": 60, "t-shirt_top": 180})
    out = tmp_path / "run"
    output = run_ok(
        [
            "run",
            "--quiet",
            "--checkpoint",
            str(ckpt),
            "--data-root",
            str(data),
            "--out",
            str(out),
            "--set",
            f"probes={json.dumps(PROBES)}",
            "--set",
            "device=cpu",
        ]
    )
    assert "report:" in output
    cfg = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert cfg["data"]["dataset"] == "image_folder" and cfg["data"]["class_names"] == CLASSES
    assert cfg["data"]["image_size"] == 12 and cfg["model"]["args"] == ARGS
    assert cfg["train"]["epochs"] == 0 and not (out / "checkpoints" / "last.pt").exists()

    run = stresslab.load(out)
    assert run.failed_probes == []
    assert set(run.results) == {"evaluation", "failures", "calibration", "explain", "label_issues"}
    skipped = [w for w in run.warnings if " skipped: " in w]
    assert len(skipped) == 2
    assert any(w.startswith("probe representation skipped: its kNN retrieval") for w in skipped)
    assert any(w.startswith("probe data_audit skipped: it audits the training set") for w in skipped)
    report = (out / "report.html").read_text()
    assert "probe representation skipped" in report and "probe data_audit skipped" in report

    # The labels are the model's class indices: trouser = 1, t-shirt/top = 0; bag (2) absent.
    preds = np.load(out / "predictions.npz")
    assert sorted(set(preds["labels"].tolist())) == [0, 1]
    assert preds["probs"].shape == (12, 3)
    assert run.metrics["evaluation.accuracy"] == pytest.approx(
        float((preds["probs"].argmax(1) == preds["labels"]).mean())
    )
    assert "no validation split" in " ".join(run.results["calibration"].warnings)


def test_cross_validated_label_issues_are_skipped_holdout_runs(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    data = _test_folder(tmp_path / "photos", {"bag": 90, "trouser": 30}, per_class=4)
    probes = {
        "evaluation": {},
        "label_issues": {"mode": "cross_val"},
        "ood": {"builtin": ["uniform_noise"], "near": [], "k": 2},
        "shortcut": {},
    }
    run = stresslab.run(
        checkpoint=ckpt,
        overrides={"data.root": str(data), "probes": probes, "device": "cpu"},
        out=tmp_path / "run",
    )
    assert set(run.results) == {"evaluation", "ood"}
    # The model's third class has no folder: absent, not 0% accurate, and out of the averages.
    table = next(t for t in run.results["evaluation"].tables if t.title.startswith("Per-class"))
    rows = {r[0]: r for r in table.rows}
    assert rows["t-shirt/top (absent)"][1:3] == [0, None] and rows["t-shirt/top (absent)"][4:] == [None, None]
    assert rows["bag"][1] == 4 and isinstance(rows["bag"][2], float)
    assert "classes absent from the test set" in " ".join(run.results["evaluation"].warnings)
    reasons = " | ".join(run.warnings)
    assert "probe label_issues skipped: mode cross_val trains models on folds" in reasons
    assert "probe shortcut skipped" in reasons and "probe ood skipped" not in reasons
    # ood fits its reference on half the 8 test images and scores the other half.
    said = "probe ood without training images: its Mahalanobis and kNN reference is fitted on a seeded half"
    assert said in reasons
    ood = run.results["ood"]
    assert ood.data["samples"]["reference"] == 4 and ood.data["samples"]["test"] == 4
    assert any("Mahalanobis covariance comes from 4 images in 16 dimensions" in w for w in ood.warnings)
    assert "ood.uniform_noise.knn.auroc" in run.metrics
    report = (tmp_path / "run" / "report.html").read_text()
    assert "probe ood without training images" in report and "no image is both reference and scored" in report


def test_a_folder_with_classes_the_model_lacks_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    data = _test_folder(tmp_path / "photos", {"bag": 90, "sandal": 30}, per_class=1)
    out = tmp_path / "run"
    res = invoke(["run", "-q", "--checkpoint", str(ckpt), "--data-root", str(data), "--out", str(out)])
    assert res.exit_code == 2
    assert str(data / "test") in res.output and "'sandal'" in res.output
    assert "'t-shirt/top', 'trouser', 'bag'" in res.output
    assert not out.exists()


def test_training_without_training_images_is_refused(tmp_path: Path) -> None:
    data = _test_folder(tmp_path / "photos", {"bag": 90, "trouser": 30}, per_class=2)
    cfg = {"data": {"dataset": "image_folder", "root": str(data)}, "train": {"epochs": 1}}
    with pytest.raises(ConfigError, match="holds no training images.*--checkpoint"):
        stresslab.run(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_checkpoint_keeps_its_own_data_when_the_root_is_not_an_image_folder(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    (tmp_path / "fmnist" / "FashionMNIST" / "raw").mkdir(parents=True)
    base = checkpoint_base(ckpt, str(tmp_path / "fmnist"))
    assert base is not None and base["data"] == {"dataset": "fashion_mnist"}
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    assert checkpoint_base(plain, str(tmp_path)) is None  # a state dict says nothing of itself


def test_timm_and_torchvision_preprocessing_from_their_configs() -> None:
    pytest.importorskip("timm")
    timm = hub_preprocessing("timm:resnet10t")
    assert timm is not None and (timm.size, timm.crop_pct) == (176, 0.875)
    assert timm.mean == pytest.approx((0.485, 0.456, 0.406)) and timm.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )
    tv = hub_preprocessing("torchvision:resnet18")
    assert tv is not None and (tv.size, tv.crop_pct) == (224, 224 / 256)
    assert hub_preprocessing("custom_cnn") is None


def test_a_timm_checkpoint_gets_its_crop_and_input_size(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    ckpt = _checkpoint(tmp_path / "model.pt", "timm:resnet10t", {}, size=32)
    data = _test_folder(tmp_path / "photos", {"bag": 90, "trouser": 30}, per_class=2)
    base = checkpoint_base(ckpt, str(data))
    assert base is not None and base["model"] == {"name": "timm:resnet10t", "args": {}}
    assert base["data"]["image_size"] == 32 and base["data"]["crop_pct"] == 0.875


@pytest.mark.slow
def test_a_timm_checkpoint_probed_on_a_test_folder(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    ckpt = _checkpoint(tmp_path / "model.pt", "timm:resnet10t", {}, size=32)
    data = _test_folder(tmp_path / "photos", {"bag": 90, "trouser": 30}, per_class=2)
    run = stresslab.run(
        checkpoint=ckpt,
        overrides={"data.root": str(data), "probes": ["evaluation"], "device": "cpu"},
        out=tmp_path / "run",
    )
    assert run.failed_probes == []
    assert np.load(tmp_path / "run" / "predictions.npz")["probs"].shape == (4, 3)
    cfg = yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())
    assert cfg["data"]["crop_pct"] == 0.875 and cfg["model"]["name"] == "timm:resnet10t"


def test_probe_takes_a_test_folder_matched_to_its_class_names(tmp_path: Path) -> None:
    data = _test_folder(tmp_path / "photos", {"bag": 200, "t-shirt_top": 20}, per_class=3)
    info = DatasetInfo("x", tuple(CLASSES), 3, 10, 10, (0.4,) * 3, (0.2,) * 3)
    torch.manual_seed(0)
    model = build_model("custom_cnn", info, ARGS)
    run = stresslab.probe(
        model,
        data,
        class_names=CLASSES,
        probes=["evaluation", "representation"],
        image_size=10,
        crop_pct=0.9,
        device="cpu",
    )
    preds = np.load(run.path / "predictions.npz")
    assert preds["labels"].tolist() == [2, 2, 2, 0, 0, 0]  # bag = 2, t-shirt/top = 0
    assert set(run.results) == {"evaluation"}
    assert any(w.startswith("probe representation skipped") for w in run.warnings)


@pytest.mark.slow
def test_a_timm_model_with_its_own_weights_is_probed_on_the_inputs_it_expects(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from torchvision.transforms import v2

    from stresslab.runs.config import RunConfig
    from stresslab.runs.prepare import prepare

    torch.manual_seed(0)
    ref = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    weights = tmp_path / "resnet10t.pt"
    torch.save(ref.state_dict(), weights)  # the library's own state dict, trained for 3 classes
    data = _test_folder(tmp_path / "photos", {"bag": 90, "trouser": 30}, per_class=2)
    cfg = RunConfig.model_validate(
        {
            "device": "cpu",
            "data": {"dataset": "image_folder", "root": str(data), "class_names": CLASSES},
            "model": {"name": "timm:resnet10t", "weights": str(weights)},
            "train": {"epochs": 0},
            "probes": ["evaluation"],
        }
    )
    prep = prepare(cfg)
    # resnet10t's pretrained config: 176 px, crop_pct 0.875, ImageNet mean and std.
    assert prep.cfg.data.image_size == 176 and prep.cfg.data.crop_pct == 0.875
    assert prep.split.test_x.shape == (4, 3, 176, 176)
    assert prep.split.info.mean == pytest.approx((0.485, 0.456, 0.406))
    # The oracle: timm's own model on torchvision's eval transform of the same file gives the
    # same logits, so size, crop, normalization and the file's 3-class head all match.
    path = data / "test" / "trouser" / "0.png"
    reference = v2.Compose(
        [
            v2.Resize(int(176 / 0.875), interpolation=v2.InterpolationMode.BICUBIC),
            v2.CenterCrop(176),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )(Image.open(path).convert("RGB"))
    pos = int(torch.nonzero(prep.split.test_y == 1)[0])  # trouser = 1, the first file of its folder
    with torch.no_grad():
        ours = prep.model.eval()(prep.split.test_x[pos : pos + 1].float() / 255)
        theirs = ref(reference[None])
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
