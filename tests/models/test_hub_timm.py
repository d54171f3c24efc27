"""Models by name from timm (the ``timm`` extra): the contract, weights files, transformers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stresslab.errors import ConfigError
from stresslab.models import build_model, check_model_name
from stresslab.models.hub_model import HubModel
from tests.cli_helpers import FAST, run_ok
from tests.hub_helpers import check_hub_contract, make_info

timm = pytest.importorskip("timm")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_timm_resnet18_contract(channels: int, size: int) -> None:
    info = make_info(channels, size)
    # output_stride 8 dilates the last two stages: 4x4 maps on 28 and 32 pixel images.
    model = build_model("timm:resnet18", info, {"output_stride": 8})
    assert isinstance(model, HubModel) and model.cam_layer == "body.layer4" and model._cam.size == (4, 4)
    assert model.body.conv1.in_channels == channels and model.features(
        torch.rand(1, channels, size, size)
    ).shape == (1, 512)
    maps = check_hub_contract(model, info)
    assert (maps.flatten(1).std(dim=1) > 0).all()  # localized, not uniform


def test_timm_weights_from_safetensors_and_one_channel(tmp_path: Path) -> None:
    torch.manual_seed(2)
    ref = timm.create_model("test_resnet", pretrained=False).eval()
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))

    def pooled(z: torch.Tensor) -> torch.Tensor:
        return ref.forward_head(ref.forward_features(z), pre_logits=True)

    x = torch.rand(2, 1, 32, 32)
    gray = build_model("timm:test_resnet", make_info(1, 32), weights=str(path)).eval()
    x3 = torch.rand(2, 3, 32, 32)
    rgb = build_model("timm:test_resnet", make_info(3, 32, classes=4), weights=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(gray.features(x), pooled(((x - 0.3) / 0.25).repeat(1, 3, 1, 1)))
        torch.testing.assert_close(rgb.features(x3), pooled((x3 - 0.3) / 0.25))
    assert rgb.head.weight.shape == (4, ref.num_features)


def test_a_vision_transformer_explains_its_last_blocks_norm1_on_the_patch_grid() -> None:
    check_model_name("timm:test_vit")
    info = make_info(1, 32, classes=3)
    model = build_model("timm:test_vit", info, {"img_size": 32})
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == (2, 3)
    last = len(model.body.blocks) - 1
    # pytorch-grad-cam's choice for ViTs: the patch tokens after it have zero gradient.
    assert model.cam_layer == f"body.blocks.{last}.norm1"
    model.cam_layer = "body.patch_embed.proj"  # chosen by hand
    assert model.cam_layer == "body.patch_embed.proj"


def test_pretrained_by_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="never downloads weights"):
        build_model("timm:test_resnet", make_info(3, 32), {"pretrained": True})
    with pytest.raises(ConfigError, match="close names: resnet18"):
        check_model_name("timm:resnt18")


@pytest.mark.slow
def test_a_run_of_a_timm_model_explains_with_the_found_layer(tmp_path: Path, fmnist_root: str) -> None:
    out = tmp_path / "run"
    explain = "{methods: [gradcam], n_high_confidence: 2, n_uncertain: 1, n_correct_per_class: 0}"
    run_ok(
        [
            *["run", "--quiet", "--out", str(out), "--data-root", fmnist_root, *FAST[:-2]],
            *["--set", "train.epochs=1", "--set", "data.train_subset=300", "--set", "data.test_subset=100"],
            *[
                "--set",
                "model.name=timm:test_resnet",
                "--set",
                f"probes={{evaluation: {{}}, explain: {explain}}}",
            ],
        ]
    )
    assert (out / "DONE").is_file()
    explained = json.loads((out / "results" / "explain.json").read_text())
    # The layer is checked on test images: the one used is the deepest candidate whose maps
    # are non-constant on 95% of them (layer4 of a barely trained net need not be).
    check = explained["data"]["settings"]["cam_layer_check"]["auto"]
    assert check["layer"] and check["share_nonconstant"] >= 0.95
    assert explained["data"]["settings"]["layer"] == check["layer"]
    # layer4 is 1x1 on these images (uniform maps): the search starts at the deepest spatial map.
    assert check["tried"][0]["layer"].startswith("body.layer3")
