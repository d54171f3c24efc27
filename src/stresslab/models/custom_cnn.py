"""``custom_cnn``: the controlled-capacity CNN of a hand-written Fashion-MNIST study."""

from __future__ import annotations

from collections.abc import Sequence

from stresslab.data.base import DatasetInfo
from stresslab.models.base import Classifier
from stresslab.models.configurable_cnn import ConvNet
from stresslab.models.factory import register_model


@register_model("custom_cnn")
def custom_cnn(
    info: DatasetInfo,
    *,
    widths: Sequence[int] = (32, 64),
    fc: int = 256,
    conv_dropout: float = 0.25,
    dropout: float = 0.5,
) -> Classifier:
    """Two stages of 2 x (3x3 conv + BatchNorm + ReLU) -> 2x2 max-pool -> dropout, then
    flatten -> FC ``fc`` -> ReLU -> dropout -> FC K (that study's baseline, 92.97-93.21% test
    accuracy on Fashion-MNIST after 15 epochs of Adam).

    ``widths`` gives one stage per entry (default 32 and 64 filters); ``conv_dropout`` is the
    rate after each stage, ``dropout`` the rate after the hidden FC layer. On 1x28x28 images the
    conv map is 64x7x7 = 3,136 features; ``features()`` is the ``fc``-wide hidden layer and
    ``cam_layer`` the last stage's convolutions (``body.block2.convs``, 14x14 on 28x28 inputs).
    """
    return ConvNet(
        info,
        filters=widths,
        convs_per_block=2,
        fc=(fc,),
        downsample="maxpool",
        batchnorm=True,
        dropout=dropout,
        conv_dropout=conv_dropout,
    )
