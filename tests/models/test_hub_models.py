"""Models by name from torchvision (a core dependency) and the parts every hub model shares:
input-conv adaptation, the Grad-CAM layer search, weights files, the errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from stresslab.errors import CheckpointError, ConfigError
from stresslab.models import build_model, check_model_name
from stresslab.models.hub import adapt_input_conv
from stresslab.models.hub_model import HubModel
from stresslab.models.spatial import find_cam_layer
from stresslab.models.weights import load_checkpoint, load_weights
from stresslab.runs.config import RunConfig
from stresslab.runs.prepare import prepare
from stresslab.train.checkpoint import save_checkpoint
from tests.hub_helpers import check_hub_contract, make_info

MARKER = Path("/tmp/stresslab-test-hub-pwned")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
@pytest.mark.parametrize(
    ("name", "args", "cam", "cam_size"),
    [
        ("torchvision:resnet18", {}, "body.layer4", 1),
        # Dilated last stage: 2x2 maps on 28 and 32 pixel images, so the CAM localizes.
        ("torchvision:mobilenet_v3_small", {"dilated": True}, "body.features", 2),
    ],
)
def test_torchvision_model_contract(
    name: str, args: dict, cam: str, cam_size: int, channels: int, size: int
) -> None:
    info = make_info(channels, size)
    model = build_model(name, info, args)
    assert isinstance(model, HubModel) and model.cam_layer == cam
    assert model._cam.size == (cam_size, cam_size)
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == channels and convs[0].weight.shape[1] == channels
    maps = check_hub_contract(model, info)
    if cam_size > 1:
        assert (maps.flatten(1).std(dim=1) > 0).any()  # not a uniform map


def test_weights_load_from_a_file_and_one_channel_sums_rgb(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None).eval()
    # Non-trivial BatchNorm statistics, so a mismatch could not hide behind identity norms.
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pt"
    torch.save(ref.state_dict(), path)
    pooled: list[torch.Tensor] = []
    ref.fc.register_forward_pre_hook(lambda m, args: pooled.append(args[0]))

    x = torch.rand(3, 1, 32, 32)
    gray = build_model("torchvision:resnet18", make_info(1, 32), weights=str(path)).eval()
    z = (x - 0.3) / 0.25  # the dataset normalization inside the model
    with torch.no_grad():
        ref(z.repeat(1, 3, 1, 1))  # the gray image in every RGB channel
        torch.testing.assert_close(gray.features(x), pooled[-1], atol=1e-5, rtol=1e-4)
        # Everything but the new 10-class head came from the file.
        assert gray.head.weight.shape == (10, 512)
        rgb = build_model("torchvision:resnet18", make_info(3, 32), weights=str(path)).eval()
        x3 = torch.rand(3, 3, 32, 32)
        ref((x3 - 0.3) / 0.25)
        torch.testing.assert_close(rgb.features(x3), pooled[-1], atol=1e-5, rtol=1e-4)

    # The same weights as .safetensors; a head trained for other classes is left out.
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(7, 512), torch.zeros(7)
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    again = build_model(
        "torchvision:resnet18", make_info(3, 32), weights=str(tmp_path / "resnet18.safetensors")
    )
    torch.testing.assert_close(again.body.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)


def test_prepare_accepts_hub_names_and_checkpoints_round_trip(tmp_path: Path, fmnist_root: str) -> None:
    cfg = RunConfig.model_validate(
        {
            "data": {"root": fmnist_root, "train_subset": 50, "test_subset": 20},
            "model": {"name": "torchvision:resnet18"},
            "probes": ["evaluation"],
        }
    )
    prep = prepare(cfg)
    assert isinstance(prep.model, HubModel) and prep.meta["model"]["name"] == "torchvision:resnet18"
    # The head is a view on body.fc: every weight is saved once and loads back into a new model.
    path = tmp_path / "best.pt"
    save_checkpoint(path, prep.model, prep.meta)
    state = load_checkpoint(path)["state_dict"]
    assert "body.fc.weight" in state and not any(k.startswith("head.") for k in state)
    fresh = build_model("torchvision:resnet18", prep.split.info)
    load_weights(fresh, state, path)
    torch.testing.assert_close(fresh.head.weight, prep.model.head.weight)
    bad = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": "torchvision:resnet19"})})
    with pytest.raises(ConfigError, match="resnet19"):
        prepare(bad)


def test_weights_that_do_not_fit_or_would_run_code_are_refused(tmp_path: Path) -> None:
    info = make_info(3, 32)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (MARKER.write_text, ("pwned",))

    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="pickled code"):
        build_model("torchvision:resnet18", info, weights=str(evil))
    assert not MARKER.exists()

    other = tmp_path / "mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), other)
    with pytest.raises(CheckpointError, match="missing keys: .*layer"):
        build_model("torchvision:resnet18", info, weights=str(other))
    with pytest.raises(ConfigError, match="model.weights: file not found"):
        build_model("torchvision:resnet18", info, weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ConfigError, match="model.weights is for timm: and torchvision: models"):
        build_model("resnet18", info, weights=str(other))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"weights": "IMAGENET1K_V1"}, "never downloads weights.*model.weights"),
        ({"pretrained": True}, "never downloads weights"),
        ({"num_classes": 10}, "model.args.num_classes .* set from the data"),
        ({"zero_init_residual": True, "bogus": 1}, "could not be built.*bogus"),
    ],
)
def test_args_errors(args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model("torchvision:resnet18", make_info(3, 32), args)
    # Asking for no weights is what happens anyway.
    assert build_model("torchvision:resnet18", make_info(3, 32), {"weights": None}) is not None


def test_names_are_checked_with_suggestions_and_the_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_model_name("torchvision:resnet18")
    check_model_name("custom_cnn")
    with pytest.raises(ConfigError, match="no classification model 'resnet19'.*resnet18"):
        check_model_name("torchvision:resnet19")
    with pytest.raises(ConfigError, match="expected 'timm:<model>'"):
        check_model_name("timm:")
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(ConfigError, match=r"pip install 'stresslab\[timm\]'"):
        check_model_name("timm:resnet18")
    with pytest.raises(ConfigError, match=r"stresslab\[timm\]"):
        build_model("timm:resnet18", make_info(3, 32))


def test_too_small_images_say_what_to_change() -> None:
    with pytest.raises(ConfigError, match="too small.*data.image_size"):
        build_model("torchvision:vgg11", make_info(1, 28))


def test_one_channel_conv_equals_the_rgb_conv_on_a_gray_image() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    original = nn.Conv2d(3, 5, 3, padding=1)
    original.load_state_dict(conv.state_dict())
    adapt_input_conv(conv, 1)
    g = torch.rand(2, 1, 6, 6)
    torch.testing.assert_close(conv(g), original(g.repeat(1, 3, 1, 1)))
    # Two channels: weights repeated cyclically, scaled by 3/2 (hand computed).
    two = nn.Conv2d(3, 4, 1, bias=False)
    w = two.weight.detach().clone()
    adapt_input_conv(two, 2)
    torch.testing.assert_close(two.weight, w[:, :2] * 1.5)


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)  # an inner pool: pooling does not start here
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(self.pool(x)))


class _Net(nn.Module):
    def __init__(self, tokens: bool = False) -> None:
        super().__init__()
        self.tokens = tokens
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.stage = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), _SqueezeExcite(8))
        self.norm = nn.Identity()
        self.mix = nn.Linear(8, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.stage(self.stem(x)))
        if self.tokens:  # (N, C, H, W) -> (N, HW, C) -> mixed -> mean token
            return self.fc(self.mix(x.flatten(2).transpose(1, 2)).mean(1))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_cam_layer_search_on_hand_built_models() -> None:
    found = find_cam_layer(_Net(), torch.rand(2, 1, 8, 8), head="fc", prefix="body.")
    assert found.layer == "body.stage" and found.size == (4, 4)
    assert found.candidates[:2] == ["body.stem", "body.stage.0"]
    # On 2x2 images the last map is 1x1: still the block, never the global pool after it.
    assert find_cam_layer(_Net(), torch.rand(2, 1, 2, 2), head="fc").layer == "stage"
    tokens = find_cam_layer(_Net(tokens=True), torch.rand(2, 1, 8, 8), head="fc", prefix="body.")
    assert tokens.layer == "" and "token sequences" in tokens.problem and "body.mix" in tokens.problem
    with pytest.raises(ConfigError, match=r"no Grad-CAM layer.*body\.stem.*gradcam\.layer"):
        tokens.require("model 'x'")
    nhwc = find_cam_layer(_Net(), torch.rand(2, 1, 8, 8), head="fc", channels_last_output=True)
    assert nhwc.layer == "" and "channels-last" in nhwc.problem
    assert find_cam_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.rand(1, 1, 2, 2)).layer == ""
