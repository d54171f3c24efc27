"""``resnet18``: torchvision's ResNet-18 adapted to small images (3x3 stem, no max-pool).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier
from stresslab.models.factory import register_model


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` torchvision BasicBlocks; the first one changes stride/width through a 1x1 shortcut."""
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(Classifier):
    """Normalize -> 3x3 stem (stride 1, no max-pool) -> layer1..layer4 -> global average pool -> FC K.

    The stem differs from the ImageNet model (7x7 stride-2 conv + max-pool), which would reduce
    a 32x32 image to 8x8 before the first residual stage; the rest is torchvision's
    ``resnet18`` (BasicBlock, [2, 2, 2, 2] blocks, widths 64/128/256/512 times ``width``,
    torchvision's initialisation). Any image size >= 8 works: layer4 maps
    (N, 3, 32, 32) -> (N, 512w, 4, 4), and the average pool makes the head size-independent.
    """

    def __init__(
        self, info: DatasetInfo, *, blocks: tuple[int, ...] = (2, 2, 2, 2), width: float = 1.0
    ) -> None:
        super().__init__(info.mean, info.std)
        if width <= 0:
            raise ConfigError(f"resnet width multiplier must be > 0, got {width}")
        planes = [max(1, round(w * width)) for w in (64, 128, 256, 512)]
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv3x3(info.channels, planes[0]),
            bn1=nn.BatchNorm2d(planes[0]),
            relu=nn.ReLU(inplace=True),
        )
        in_planes = planes[0]
        for i, (p, n) in enumerate(zip(planes, blocks, strict=True), start=1):
            layers[f"layer{i}"] = _stage(in_planes, p, n, stride=1 if i == 1 else 2)
            in_planes = p
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(in_planes, info.num_classes)
        self.feature_dim = in_planes
        self.cam_layer = "body.layer4"
        # torchvision's ResNet initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


@register_model("resnet18")
def resnet18(info: DatasetInfo, *, width: float = 1.0) -> Classifier:
    """ResNet-18 for small images (11.2M parameters at ``width=1`` with 3 channels and 10 classes).

    ``width`` multiplies every stage's channel count (0.25 gives a ~0.7M-parameter model for
    quick studies). ``features()`` is the 512*width pooled embedding; ``cam_layer`` is
    ``body.layer4``.
    """
    return ResNet(info, blocks=(2, 2, 2, 2), width=width)
