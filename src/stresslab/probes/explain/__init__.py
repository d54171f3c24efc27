"""The ``explain`` probe and its attribution methods (importing this registers the probe).

One file per method, each overriding ``Attribution._attribute``: ``gradcam``, ``saliency``,
``smoothgrad``, ``integrated_gradients``, ``occlusion``; ``quality`` measures how far a map
can be trusted; ``probe`` ties them together.
"""

from stresslab.probes.explain.base import ATTRIBUTIONS, Attribution, fill_value
from stresslab.probes.explain.gradcam import GradCam
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
    "ATTRIBUTIONS",
    "Attribution",
    "ExplainProbe",
    "GradCam",
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
    "spearman_rows",
]
