"""The ``explain`` probe and its attribution methods (importing this registers the probe).

One file per method, each a subclass of ``Attribution`` overriding one hook and
registering itself in ``METHODS`` with ``@register_method(name)``: ``gradcam``,
``gradcam_plus_plus``, ``saliency``, ``smoothgrad``, ``integrated_gradients``,
``occlusion``. ``quality`` measures how far a map can be trusted; ``probe`` ties the
parts together (``cases``, ``compute``, ``checks``, ``present``, ``figures``, ``records``).
"""

from stresslab.probes.explain.base import METHODS, Attribution, fill_value, register_method
from stresslab.probes.explain.gradcam import GradCam
from stresslab.probes.explain.gradcam_plus_plus import GradCamPlusPlus
from stresslab.probes.explain.integrated_gradients import IntegratedGradients
from stresslab.probes.explain.occlusion import Occlusion, OcclusionMaps
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.explain.quality import (
    RandomizationResult,
    background_mask,
    background_share,
    curve_auc,
    deletion_insertion_curves,
    randomization_test,
    randomized_copy,
    spearman_rows,
)
from stresslab.probes.explain.saliency import Saliency
from stresslab.probes.explain.smoothgrad import SmoothGrad

__all__ = [
    "METHODS",
    "Attribution",
    "ExplainProbe",
    "GradCam",
    "GradCamPlusPlus",
    "IntegratedGradients",
    "Occlusion",
    "OcclusionMaps",
    "RandomizationResult",
    "Saliency",
    "SmoothGrad",
    "background_mask",
    "background_share",
    "curve_auc",
    "deletion_insertion_curves",
    "fill_value",
    "randomization_test",
    "randomized_copy",
    "register_method",
    "spearman_rows",
]
