"""``simple_cnn``: the three-block baseline CNN of a CIFAR-10 study."""

from __future__ import annotations

from stresslab.data.base import DatasetInfo
from stresslab.models.base import Classifier
from stresslab.models.configurable_cnn import ConvNet
from stresslab.models.factory import register_model


@register_model("simple_cnn")
def simple_cnn(info: DatasetInfo, *, dropout: float = 0.0) -> Classifier:
    """Three blocks of 3x3 conv (pad 1) + ReLU + 2x2 max-pool with 32, 64 and 128 filters, then
    flatten -> FC 256 -> ReLU -> [dropout] -> FC K (that study's SimpleCNN; on 3x32x32 inputs the
    flattened map is 128x4x4 = 2,048).

    ``dropout`` is the rate after the hidden FC layer (0 = none, as in the seed).
    ``features()`` is the 256-wide hidden layer; ``cam_layer`` is ``body.block3.convs``
    (conv3 + ReLU before its pool, the layer the seed explained with Grad-CAM).
    """
    return ConvNet(info, filters=(32, 64, 128), fc=(256,), dropout=dropout)
