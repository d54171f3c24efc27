"""A plain CNN built from a list of widths, as in depth/filters studies on mini-ImageNet;
the base of ``simple_cnn`` and ``custom_cnn``.

Layout: ``body.block1 .. body.blockN`` (each ``convs`` -> ``pool`` -> ``drop``), an optional
global average pool, flatten, hidden FC layers (``fc1``, ``relu1``, ``drop1``, ...), then
``head`` (the last Linear). ``features()`` is the output of the last hidden FC layer (or the
flattened conv map when ``fc`` is empty).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError, DataError
from stresslab.models.base import Classifier
from stresslab.models.factory import register_model

Downsample = Literal["maxpool", "stride"]


def halve(size: int) -> int:
    """Spatial size after one 2x downsampling step: ``ceil(size / 2)``, never below 1.

    Both downsamplers used here give this size: ``MaxPool2d(2, ceil_mode=True)`` and a
    3x3 convolution with stride 2 and padding 1.
    """
    return max(1, (size + 1) // 2)


def pool2() -> nn.MaxPool2d:
    """2x2 max-pool, stride 2, with ``ceil_mode`` so a 1-pixel map stays 1 pixel.

    ``ceil_mode`` is what lets deep stacks (VGG's five pools) run on images as small as 8x8
    and on odd sizes such as 28 (28 -> 14 -> 7 -> 4 -> 2 -> 1) instead of failing on 0x0.
    """
    return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)


class ConvStage(nn.Module):
    """``convs`` (n x [3x3 conv, optional BatchNorm, ReLU]) -> ``pool`` -> ``post`` -> ``drop``.

    Maps (N, C_in, H, W) -> (N, C_out, ceil(H/2), ceil(W/2)) when it downsamples, else keeps
    H and W. With ``downsample="stride"`` the last conv has stride 2 and ``pool`` is the
    identity, so both variants give the same output shape. ``convs`` is the spatial layer
    Grad-CAM explains (its output is taken before the pool, at the stage's full resolution).

    ``pool_first`` (max-pool only) moves the last conv's BatchNorm and ReLU after the pool
    (``post``), as airbench orders its blocks: they then touch a quarter of the values, which
    makes training about 1.3x faster on a CPU where they are memory-bound. ``convs`` then ends
    with that conv's raw output, so the stage itself (after ``post``) is the layer to explain.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        convs: int = 1,
        batchnorm: bool = False,
        downsample: Downsample | None = "maxpool",
        dropout: float = 0.0,
        pool_first: bool = False,
    ) -> None:
        super().__init__()
        if pool_first and downsample != "maxpool":
            raise ConfigError("pool_first needs downsample='maxpool'")
        layers: list[nn.Module] = []
        for i in range(convs):
            stride = 2 if downsample == "stride" and i == convs - 1 else 1
            # The conv bias is redundant before BatchNorm (BN's shift replaces it).
            layers.append(
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batchnorm)
            )
            if batchnorm:
                layers.append(nn.BatchNorm2d(out_channels))
            # Not in place: a hook on any layer here must see a tensor nobody overwrites.
            layers.append(nn.ReLU())
            in_channels = out_channels
        after = layers[-2:] if batchnorm else layers[-1:]
        self.convs = nn.Sequential(*(layers[: -len(after)] if pool_first else layers))
        self.pool: nn.Module = pool2() if downsample == "maxpool" else nn.Identity()
        self.post: nn.Module = nn.Sequential(*after) if pool_first else nn.Identity()
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.post(self.pool(self.convs(x))))


def per_block(convs_per_block: int | Sequence[int], blocks: int) -> list[int]:
    """Convolutions per stage: one count for every stage, or one count per stage (each >= 1)."""
    counts = [convs_per_block] * blocks if isinstance(convs_per_block, int) else list(convs_per_block)
    if len(counts) != blocks or any(int(n) < 1 for n in counts):
        raise ConfigError(
            f"convs_per_block must be an integer >= 1 or one such integer per stage ({blocks}), "
            f"got {convs_per_block!r}"
        )
    return [int(n) for n in counts]


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


class ConvNet(Classifier):
    """Normalize -> conv stages -> [global average pool] -> flatten -> hidden FC layers -> head.

    Built for one image size (``info.height`` x ``info.width``) when it flattens the conv map,
    as the seed studies did; with ``global_pool=True`` it takes any size. Input: (N, C, H, W)
    in [0, 1]; output: logits (N, K).
    """

    def __init__(
        self,
        info: DatasetInfo,
        *,
        filters: Sequence[int],
        convs_per_block: int | Sequence[int] = 1,
        fc: Sequence[int] = (),
        downsample: Downsample = "maxpool",
        batchnorm: bool = False,
        dropout: float = 0.0,
        conv_dropout: float = 0.0,
        global_pool: bool = False,
        pool_first: bool = False,
    ) -> None:
        super().__init__(info.mean, info.std)
        if not filters or any(int(f) < 1 for f in filters):
            raise ConfigError(f"filters must be a non-empty list of positive widths, got {list(filters)}")
        convs = per_block(convs_per_block, len(filters))
        if any(int(n) < 1 for n in fc):
            raise ConfigError(f"fc must list positive widths, got {list(fc)}")
        if downsample not in ("maxpool", "stride"):
            raise ConfigError(f"downsample must be 'maxpool' or 'stride', got {downsample!r}")
        _check_rate("dropout", dropout)
        _check_rate("conv_dropout", conv_dropout)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, height, width = info.channels, info.height, info.width
        for i, out in enumerate(filters, start=1):
            layers[f"block{i}"] = ConvStage(
                channels,
                int(out),
                convs=convs[i - 1],
                batchnorm=batchnorm,
                downsample=downsample,
                dropout=conv_dropout,
                pool_first=pool_first,
            )
            channels, height, width = int(out), halve(height), halve(width)
        if global_pool:
            layers["gap"] = nn.AdaptiveAvgPool2d(1)
            height = width = 1
        layers["flatten"] = nn.Flatten(1)
        dim = channels * height * width
        for j, hidden in enumerate(fc, start=1):
            layers[f"fc{j}"] = nn.Linear(dim, int(hidden))
            layers[f"relu{j}"] = nn.ReLU()
            if dropout > 0:
                layers[f"drop{j}"] = nn.Dropout(dropout)
            dim = int(hidden)
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(dim, info.num_classes)
        self.feature_dim = dim
        # The last stage's output after its activation: with ``pool_first`` the stage's
        # ``convs`` end with a raw conv output, whose class activation is negative everywhere
        # on most images of a trained model (constant Grad-CAM maps), so the whole stage is
        # explained (after its pool, BatchNorm and ReLU) instead.
        last = f"body.block{len(filters)}"
        self.cam_layer = last if pool_first else f"{last}.convs"
        self.image_size: tuple[int, int] | None = None if global_pool else (info.height, info.width)

    def features(self, x: Tensor) -> Tensor:
        """Embedding (N, D) of images (N, C, H, W) in [0, 1]; H x W must be the size the model was
        built for unless it pools globally."""
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            h, w = self.image_size
            raise DataError(
                f"this model was built for {h}x{w} images (it flattens its last conv map), got "
                f"{x.shape[-2]}x{x.shape[-1]}; set global_pool=True for a model that takes any size"
            )
        return super().features(x)


@register_model("configurable_cnn")
def configurable_cnn(
    info: DatasetInfo,
    *,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int | Sequence[int] = 1,
    fc: Sequence[int] = (256, 128),
    downsample: Downsample = "maxpool",
    batchnorm: bool = False,
    dropout: float = 0.0,
    conv_dropout: float = 0.0,
    global_pool: bool = False,
) -> Classifier:
    """The configurable CNN of a mini-ImageNet depth/filters study.

    Its best run is the default: filters [32, 64, 128], FC [256, 128].

    ``filters``: one stage per entry, each ``convs_per_block`` 3x3 convs of that width (one
    count for all stages, or a list with one count per stage).
    ``fc``: hidden fully connected widths before the K-way head. ``downsample``: ``"maxpool"``
    (2x2 max-pool after each stage) or ``"stride"`` (the stage's last conv has stride 2).
    ``batchnorm`` after each conv; ``dropout`` after each hidden FC layer; ``conv_dropout``
    after each stage; ``global_pool`` averages the last map to 1x1 (any input size) instead of
    flattening it.
    """
    return ConvNet(
        info,
        filters=filters,
        convs_per_block=convs_per_block,
        fc=fc,
        downsample=downsample,
        batchnorm=batchnorm,
        dropout=dropout,
        conv_dropout=conv_dropout,
        global_pool=global_pool,
    )
