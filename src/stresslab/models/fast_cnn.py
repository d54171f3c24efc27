"""``fast_cnn``: the default Fashion-MNIST model, shaped for accuracy per unit of compute."""

from __future__ import annotations

from collections.abc import Sequence

from stresslab.data.base import DatasetInfo
from stresslab.models.base import Classifier
from stresslab.models.configurable_cnn import ConvNet
from stresslab.models.factory import register_model


@register_model("fast_cnn")
def fast_cnn(
    info: DatasetInfo,
    *,
    widths: Sequence[int] = (16, 48, 96),
    convs_per_block: int | Sequence[int] = 2,
    fc: int = 0,
    pool_first: bool = True,
) -> Classifier:
    """Three stages of ``convs_per_block`` x (3x3 conv + BatchNorm + ReLU) with a 2x2 max-pool,
    then flatten -> FC K. No dropout, and no hidden FC layer unless ``fc`` > 0 asks for one of
    that width (``widths`` and ``fc`` mean what they mean for ``custom_cnn``). With
    ``pool_first`` (the default) each stage pools right after its last conv and applies that
    conv's BatchNorm and ReLU to the pooled map, as airbench orders its blocks.

    The compute goes where it is cheap: the stage at full resolution is narrow (16 filters),
    the wide ones run on 14x14 and 7x7 maps (48 and 96 filters), as in airbench (Jordan 2024,
    "94% on CIFAR-10 in 3.29 seconds on a single GPU"). On 1x28x28 images: about 27 MFLOP
    forward per image against 38 for ``custom_cnn``; training takes about half its time per
    epoch on a 2-core CPU (BatchNorm and ReLU are memory-bound there, and pooling first gives
    them a quarter of the values in each stage's last layer), and it gains more accuracy per
    epoch (see the README's "Why this default").

    ``features()`` is the flattened last map (96 x 4 x 4 = 1,536 values on 28x28 inputs; the
    hidden layer when ``fc`` > 0) and ``cam_layer`` the last stage's output after its ReLU
    (``body.block3``, 4x4 on 28x28 inputs; ``body.block3.convs`` without ``pool_first``).
    With ``pool_first`` the last conv's raw output (7x7, before its BatchNorm and ReLU) gives
    a class activation that is negative everywhere on most images of a trained model, so
    its Grad-CAM maps are constant; the stage's output after the ReLU has non-constant maps
    on every image the README's measurement tried. Built for one image size, like
    ``custom_cnn``.
    """
    return ConvNet(
        info,
        filters=widths,
        convs_per_block=convs_per_block,
        fc=(fc,) if fc > 0 else (),
        downsample="maxpool",
        batchnorm=True,
        pool_first=pool_first,
    )
