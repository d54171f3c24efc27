"""``vgg16`` and ``vgg19``: torchvision's VGG layer configs adapted to small images.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 (arXiv:1409.1556).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn
from torchvision.models.vgg import cfgs

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.models.configurable_cnn import ConvStage
from stresslab.models.factory import register_model


def _stages(cfg: Sequence[int | str]) -> list[tuple[int, int]]:
    """Split a torchvision VGG config ([64, 64, "M", 128, ...]) into (convs, width) per stage."""
    stages: list[list[int]] = [[]]
    for v in cfg:
        if v == "M":
            stages.append([])
        else:
            stages[-1].append(int(v))
    stages = [s for s in stages if s]
    for s in stages:
        if len(set(s)) != 1:
            raise ValueError(f"VGG stage with mixed widths {s}")
    return [(len(s), s[0]) for s in stages]


class VGG(Classifier):
    """Normalize -> five stages of 3x3 convs (optional BatchNorm) each followed by a 2x2 max-pool
    -> global average pool -> FC 256 -> ReLU -> dropout -> FC K.

    Changes from torchvision's ImageNet VGG: ``in_channels`` is the dataset's, max-pools use
    ``ceil_mode`` (a 1x1 map stays 1x1, so images as small as 8x8 and odd sizes like 28 work),
    the 7x7 adaptive pool and 4096-wide classifier are replaced by a global average pool and a
    512 -> 256 -> K head. Module ``body.block<i>.convs`` is stage i's conv stack.
    """

    def __init__(
        self, info: DatasetInfo, *, cfg: str, batchnorm: bool = True, hidden: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__(info.mean, info.std)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        stages = _stages(cfgs[cfg])
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = info.channels
        for i, (convs, width) in enumerate(stages, start=1):
            layers[f"block{i}"] = ConvStage(channels, width, convs=convs, batchnorm=batchnorm)
            channels = width
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        layers["fc1"] = nn.Linear(channels, hidden)
        layers["relu1"] = nn.ReLU()
        if dropout > 0:
            layers["drop1"] = nn.Dropout(dropout)
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(hidden, info.num_classes)
        self.feature_dim = hidden
        self.cam_layer = f"body.block{len(stages)}.convs"
        # torchvision's VGG initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


@register_model("vgg16")
def vgg16(
    info: DatasetInfo, *, batchnorm: bool = True, hidden: int = 256, dropout: float = 0.5
) -> Classifier:
    """VGG-16 (config "D": 13 convs in stages of 2, 2, 3, 3, 3) for small images.

    ``batchnorm`` after every conv (default on); ``hidden`` is the width of the one hidden FC
    layer (``features()``), ``dropout`` its dropout rate. ``cam_layer``: ``body.block5.convs``.
    """
    return VGG(info, cfg="D", batchnorm=batchnorm, hidden=hidden, dropout=dropout)


@register_model("vgg19")
def vgg19(
    info: DatasetInfo, *, batchnorm: bool = True, hidden: int = 256, dropout: float = 0.5
) -> Classifier:
    """VGG-19 (config "E": 16 convs in stages of 2, 2, 4, 4, 4) for small images.

    Settings as :func:`vgg16`. ``cam_layer``: ``body.block5.convs``.
    """
    return VGG(info, cfg="E", batchnorm=batchnorm, hidden=hidden, dropout=dropout)
