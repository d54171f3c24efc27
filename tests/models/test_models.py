"""Contract tests for every registered model, the user-model adapter and the FLOP counter."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError, DataError
from stresslab.models import MODELS, build_model, get_layer, load_user_model, model_args, model_summary
from stresslab.models.base import Classifier

# ResNet-18 and VGG are tested on small maps only: their cost grows with the image area.
HEAVY = {"resnet18", "vgg16", "vgg19"}
SIZES = [(8, 8), (28, 28), (32, 32), (9, 13)]
HEAVY_SIZES = [(8, 8), (16, 16), (9, 13)]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Batches of two tiny images gain nothing from threads, and idle worker threads spin and
    # slow everything down when the cores are busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_info(channels: int = 3, height: int = 8, width: int = 8, classes: int = 3) -> DatasetInfo:
    return DatasetInfo(
        name="tiny",
        class_names=tuple(f"c{i}" for i in range(classes)),
        channels=channels,
        height=height,
        width=width,
        mean=tuple(0.2 + 0.1 * c for c in range(channels)),
        std=tuple(0.3 + 0.05 * c for c in range(channels)),
    )


def spatial_output(model: nn.Module, layer_name: str, x: Tensor) -> Tensor:
    captured: list[Tensor] = []
    handle = get_layer(model, layer_name).register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


def check_contract(model: Classifier, x: Tensor, classes: int) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    assert logits.shape == (x.shape[0], classes)
    nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % classes).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)

    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        assert feats.ndim == 2 and feats.shape[0] == x.shape[0]
        torch.testing.assert_close(model.head(feats), model(x))
        cam = spatial_output(model, model.cam_layer, x)
    assert cam.ndim == 4 and cam.shape[0] == x.shape[0] and min(cam.shape[2:]) >= 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MODELS.names())
def test_registered_model_contract(name: str, channels: int) -> None:
    torch.manual_seed(0)
    classes = 2 if channels == 1 else 3
    model = None
    for size in HEAVY_SIZES if name in HEAVY else SIZES:
        # ResNet and VGG pool adaptively: one model must take every size. The flattening CNNs
        # are built for their dataset's size.
        if model is None or name not in HEAVY:
            model = build_model(name, make_info(channels, *size, classes=classes))
        assert isinstance(model, Classifier)
        check_contract(model, torch.rand(2, channels, *size), classes)


@pytest.mark.parametrize("name", MODELS.names())
def test_normalization_is_inside_the_model(name: str) -> None:
    info = make_info(3, 8, 8)
    model = build_model(name, info).eval()
    state = model.state_dict()
    torch.testing.assert_close(state["normalize.mean"].flatten(), torch.tensor(info.mean))
    torch.testing.assert_close(state["normalize.std"].flatten(), torch.tensor(info.std))
    x = torch.rand(2, 3, 8, 8)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = model.head(torch.flatten(model.body((x - mean) / std), 1))
        torch.testing.assert_close(model(x), by_hand)


def test_small_images_96_and_seed_shapes() -> None:
    # simple_cnn: 3x32x32 -> 128x4x4 = 2048 flattened; custom_cnn: 1x28x28 -> 64x7x7 = 3136.
    simple = build_model("simple_cnn", make_info(3, 32, 32, classes=10))
    assert simple.body.fc1.in_features == 2048
    custom = build_model("custom_cnn", make_info(1, 28, 28, classes=10))
    assert custom.body.fc1.in_features == 3136
    assert custom.body.fc1.out_features == 256
    big = build_model("simple_cnn", make_info(3, 96, 96), {"dropout": 0.3})
    logits = big(torch.rand(2, 3, 96, 96))
    assert logits.shape == (2, 3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in big.modules())


def test_fast_cnn_shape_cost_and_explanation_layer() -> None:
    info = make_info(1, 28, 28, classes=10)
    fast = build_model("fast_cnn", info)
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 48, 48, 96, 96]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) == 6
    assert not any(isinstance(m, nn.Dropout) for m in fast.modules())
    # 28 -> 14 -> 7 -> 4: the head reads the flattened 96x4x4 map.
    assert fast.head.in_features == 96 * 4 * 4
    x = torch.rand(3, 1, 28, 28)
    assert fast.features(x).shape == (3, 1536)
    assert fast.cam_layer == "body.block3"  # after its ReLU: see fast_cnn
    # Pool first: each stage's last BatchNorm and ReLU run after the pool, on a quarter of the
    # values; the parameters are the same as in the usual order.
    stage = fast.body.block3
    assert isinstance(stage.convs[-1], nn.Conv2d)
    assert [type(m) for m in stage.post] == [nn.BatchNorm2d, nn.ReLU]
    usual = build_model("fast_cnn", info, {"pool_first": False})
    assert isinstance(usual.body.block3.post, nn.Identity)
    assert sum(p.numel() for p in usual.parameters()) == sum(p.numel() for p in fast.parameters())
    # In eval mode, with a positive BatchNorm scale, BN and ReLU are increasing per channel and
    # commute with max-pooling: the same function as the usual order.
    stage.eval()
    with torch.no_grad():
        stage.post[0].running_mean.uniform_(-1, 1)
        stage.post[0].running_var.uniform_(0.5, 2)
        stage.post[0].weight.uniform_(0.5, 2)
        stage.post[0].bias.uniform_(-1, 1)
        y = torch.randn(2, 96, 7, 7)
        assert torch.allclose(stage.post(stage.pool(y)), stage.pool(stage.post(y)))
    stage.train()
    assert spatial_output(fast, fast.cam_layer, x).shape == (3, 96, 4, 4)
    # Multiply-accumulates per image, by hand: 3x3 convs at 28, 28, 14, 14, 7, 7 pixels a side.
    by_hand = 9 * (28 * 28 * (1 * 16 + 16 * 16) + 14 * 14 * (16 * 48 + 48 * 48) + 7 * 7 * (48 * 96 + 96 * 96))
    by_hand += 1536 * 10
    assert model_summary(fast, info)["macs"] == by_hand
    assert by_hand < 0.75 * model_summary(build_model("custom_cnn", info), info)["macs"]
    narrow = build_model("fast_cnn", info, {"widths": [4, 8], "convs_per_block": [1, 3], "fc": 12})
    assert [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 8, 8]
    assert narrow.body.fc1.in_features == 8 * 7 * 7 and narrow.features(x).shape == (3, 12)
    with pytest.raises(ConfigError, match="one such integer per stage"):
        build_model("fast_cnn", info, {"widths": [4, 8], "convs_per_block": [1, 2, 3]})
    with pytest.raises(ConfigError, match="convs_per_block"):
        build_model("configurable_cnn", info, {"convs_per_block": 0})


def test_resnet18_matches_torchvision_except_the_stem() -> None:
    ours = build_model("resnet18", make_info(3, 8, 8, classes=10))
    # torchvision.models.resnet18(num_classes=10) has 11,181,642 parameters; the 7x7 stem
    # (64*3*49 weights) becomes 3x3 (64*3*9), everything else is torchvision's.
    assert sum(p.numel() for p in ours.parameters()) == 11_181_642 - 64 * 3 * 49 + 64 * 3 * 9
    assert not any(isinstance(m, nn.MaxPool2d) for m in ours.modules())
    assert ours.cam_layer == "body.layer4"
    quarter = build_model("resnet18", make_info(1, 8, 8), {"width": 0.25})
    assert quarter.head.in_features == 128


# Conv widths from the VGG paper (Simonyan and Zisserman 2015, Table 1, configs D and E).
VGG_WIDTHS = {
    "vgg16": [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6,
    "vgg19": [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8,
}


@pytest.mark.parametrize("name", sorted(VGG_WIDTHS))
def test_vgg_convs_follow_the_paper(name: str) -> None:
    ours = build_model(name, make_info(1, 8, 8))
    convs = [m for m in ours.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == VGG_WIDTHS[name]
    assert convs[0].in_channels == 1
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in ours.modules()) == 5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ours.modules()) == len(convs)
    assert ours.head.in_features == 256 and ours.body.fc1.in_features == 512
    plain = build_model(name, make_info(1, 8, 8), {"batchnorm": False})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_configurable_cnn_settings() -> None:
    info = make_info(3, 20, 20)
    args = {"filters": [4, 8, 16], "fc": [12], "batchnorm": True, "dropout": 0.2, "convs_per_block": 2}
    pooled = build_model("configurable_cnn", info, {**args, "downsample": "maxpool"})
    strided = build_model("configurable_cnn", info, {**args, "downsample": "stride"})
    convs = [m for m in strided.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6
    assert [c.stride for c in convs] == [(1, 1), (2, 2)] * 3
    assert not any(isinstance(m, nn.MaxPool2d) for m in strided.modules())
    x = torch.rand(2, 3, 20, 20)
    # Both downsamplers give 20 -> 10 -> 5 -> 3.
    assert pooled.body.fc1.in_features == strided.body.fc1.in_features == 16 * 3 * 3
    assert pooled.features(x).shape == (2, 12)
    # More downsampling stages than the image allows still ends at 1x1, never 0x0.
    deep = build_model("configurable_cnn", make_info(1, 8, 8), {"filters": [4] * 6, "fc": []})
    assert deep.features(torch.rand(2, 1, 8, 8)).shape == (2, 4)
    gap = build_model("configurable_cnn", info, {"filters": [4], "fc": [], "global_pool": True})
    assert gap.features(torch.rand(2, 3, 33, 17)).shape == (2, 4)
    with pytest.raises(DataError, match="built for 20x20 images"):
        pooled(torch.rand(2, 3, 16, 16))
    with pytest.raises(ConfigError, match="downsample"):
        build_model("configurable_cnn", info, {"downsample": "avg"})
    with pytest.raises(ConfigError, match="filters"):
        build_model("configurable_cnn", info, {"filters": []})


def test_unknown_model_args_are_named_with_the_accepted_ones() -> None:
    info = make_info()
    with pytest.raises(ConfigError, match=r"'dropuot'.*accepted: dropout") as err:
        build_model("simple_cnn", info, {"dropuot": 0.1})
    assert "simple_cnn" in str(err.value)
    with pytest.raises(ConfigError, match="widths"):
        build_model("custom_cnn", info, {"width": [8]})
    with pytest.raises(ConfigError, match="unknown model 'alexnet'"):
        build_model("alexnet", info)
    assert model_args("simple_cnn") == {"dropout": 0.0}
    assert set(model_args("configurable_cnn")) >= {"filters", "fc", "downsample", "batchnorm", "dropout"}


def test_model_summary_flops_match_a_hand_count() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
            self.fc = nn.Linear(27, 4)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    model = Tiny().train()
    info = make_info(2, 5, 5, classes=4)
    summary = model_summary(model, info)
    # conv: 3x3x3 outputs (5 -> 3 with stride 2), each 2 channels x 3x3 taps = 27 * 18 = 486
    # MACs; linear: 4 outputs x 27 inputs = 108 MACs. One MAC = 2 FLOPs.
    assert summary["macs"] == 486 + 108
    assert summary["gflops"] == pytest.approx(2 * 594 / 1e9)
    assert summary["params"] == (3 * 2 * 9 + 3) + (27 * 4 + 4)
    assert model.training
    assert not model.conv._forward_hooks and not model.fc._forward_hooks
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


USER_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Plain(nn.Module):
        def __init__(self, num_classes, hidden=6):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.other = nn.Conv2d(4, 4, 1)
            self.fc1 = nn.Linear(4, hidden)
            self.fc2 = nn.Linear(hidden, num_classes)

        def forward(self, x):
            z = torch.relu(self.other(torch.relu(self.conv(x)))).mean((2, 3))
            return self.fc2(torch.relu(self.fc1(z)))


    class WithFeatures(Plain):
        cam_layer = "conv"
        calls = 0

        def features(self, x):
            WithFeatures.calls += 1
            z = torch.relu(self.other(torch.relu(self.conv(x)))).mean((2, 3))
            return torch.relu(self.fc1(z))


    class LogSoftmax(Plain):
        def forward(self, x):
            return torch.log_softmax(super().forward(x), 1)


    class WithHead(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, num_classes))

        def features(self, x):
            return torch.relu(self.conv(x)).mean((2, 3))

        def forward(self, x):
            return self.head(self.features(x))


    class NoLinear(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

        def forward(self, x):
            return self.conv(x).mean((2, 3))


    class Broken(nn.Module):
        def __init__(self):
            raise RuntimeError("no weights here")
    """
)


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_net.py"
    path.write_text(USER_SOURCE)
    return path


def test_user_model_without_features_uses_the_last_linear_input(user_file: Path) -> None:
    info = make_info(3, 8, 8, classes=5)
    model = load_user_model(f"{user_file}:Plain", info, {"hidden": 7})
    model.eval()
    x = torch.rand(2, 3, 8, 8)
    inner = model.body
    with torch.no_grad():
        z = (x - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1)
        hidden = torch.relu(inner.fc1(torch.relu(inner.other(torch.relu(inner.conv(z)))).mean((2, 3))))
        torch.testing.assert_close(model.features(x), hidden)
        torch.testing.assert_close(model(x), inner(z))
        torch.testing.assert_close(model.head(model.features(x)), model(x))
    assert model(x).shape == (2, 5)
    assert model.cam_layer == "body.other"
    assert get_layer(model, model.cam_layer) is inner.other
    assert not inner.fc2._forward_hooks
    # Each weight is saved once, under body.
    assert not any(k.startswith("head.") for k in model.state_dict())


def test_user_model_with_features_method_and_cam_layer(user_file: Path) -> None:
    info = make_info(3, 8, 8, classes=4)
    model = build_model("ignored", info, source=f"{user_file}:WithFeatures")
    module = sys.modules[type(model.body).__module__]
    before = module.WithFeatures.calls
    feats = model.features(torch.rand(2, 3, 8, 8))
    assert module.WithFeatures.calls == before + 1
    assert feats.shape == (2, 6)
    assert model.cam_layer == "body.conv"


def test_user_model_options_and_inconsistent_head(user_file: Path) -> None:
    info = make_info(3, 8, 8, classes=4)
    raw = load_user_model(f"{user_file}:Plain", info, {}, normalize=False)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(raw(x), raw.body(x))
    # A forward that does something after its last Linear cannot be split into features + head.
    logsm = load_user_model(f"{user_file}:LogSoftmax", info, {})
    assert logsm.features is None
    assert logsm(x).shape == (2, 4)
    no_linear = load_user_model(f"{user_file}:NoLinear", info, {})
    assert no_linear.features is None
    assert no_linear.cam_layer == "body.conv"
    with_head = load_user_model(f"{user_file}:WithHead", info, {})
    assert with_head.head is with_head.body.head
    with torch.no_grad():
        assert with_head.features(x).shape == (2, 4)
        torch.testing.assert_close(with_head.head(with_head.features(x)), with_head(x))


def test_user_model_from_a_module_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stresslab_test_pkg_models.py").write_text(USER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_user_model("stresslab_test_pkg_models:Plain", make_info(3, 8, 8), {})
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    ("spec", "args", "message"),
    [
        ("{dir}/missing.py:Net", {}, "does not exist"),
        ("{file}:Nope", {}, "has no class 'Nope'"),
        ("{file}:Broken", {}, "no weights here"),
        ("{file}:Plain", {"depth": 3}, "depth"),
        ("{file}", {}, "must look like"),
        ("no_such_module_xyz:Net", {}, "cannot import module"),
    ],
)
def test_user_model_errors_name_the_spec(user_file: Path, spec: str, args: dict, message: str) -> None:
    spec = spec.format(dir=user_file.parent, file=user_file)
    with pytest.raises(ConfigError, match=message) as err:
        load_user_model(spec, make_info(), args)
    assert spec in str(err.value)


def test_user_model_wrong_class_count(user_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected logits of shape \(N, 3\), got \(2, 7\)"):
        load_user_model(f"{user_file}:Plain", make_info(classes=3), {"num_classes": 7})
