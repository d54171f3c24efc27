"""Attribution methods: images and target classes in, one (H, W) map per image out.

One file per method, each a subclass of ``Attribution`` overriding one hook and registering
itself in ``ATTRIBUTIONS`` with ``@register_attribution(name)``: ``gradcam``,
``gradcam_plus_plus``, ``saliency``, ``smoothgrad``, ``integrated_gradients``, ``occlusion``,
``attention_rollout`` (vision transformers).
The methods know nothing of where they are used: the explain probe, the shortcut probe and
the study gallery build them through ``ATTRIBUTIONS.build(name, **settings)``.
"""

from stresslab.attributions.attention_rollout import AttentionRollout
from stresslab.attributions.base import (
    ATTRIBUTIONS,
    Attribution,
    OcclusionMaps,
    fill_value,
    register_attribution,
)
from stresslab.attributions.gradcam import GradCam
from stresslab.attributions.gradcam_plus_plus import GradCamPlusPlus
from stresslab.attributions.integrated_gradients import IntegratedGradients
from stresslab.attributions.occlusion import Occlusion
from stresslab.attributions.saliency import Saliency
from stresslab.attributions.smoothgrad import SmoothGrad

__all__ = [
    "ATTRIBUTIONS",
    "AttentionRollout",
    "Attribution",
    "GradCam",
    "GradCamPlusPlus",
    "IntegratedGradients",
    "Occlusion",
    "OcclusionMaps",
    "Saliency",
    "SmoothGrad",
    "fill_value",
    "register_attribution",
]
