"""The ``explain`` probe (importing this registers it): attribution maps of the failures, and
how far each method's maps can be trusted.

The methods themselves live in :mod:`stresslab.attributions`. ``quality`` measures how far a
map can be trusted; ``probe`` ties the parts together (``cases``, ``compute``, ``checks``,
``present``, ``figures``, ``records``).
"""

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

__all__ = [
    "ExplainProbe",
    "RandomizationResult",
    "background_mask",
    "background_share",
    "curve_auc",
    "deletion_insertion_curves",
    "randomization_test",
    "randomized_copy",
    "spearman_rows",
]
