"""The ``ood`` probe (importing this registers it): ``scores`` computes the outlier scores,
``sets`` builds and reads the out-of-distribution sets, ``present`` the report parts and
``probe`` ties them together; the detection metrics live in :mod:`stresslab.metrics.ood`."""

from stresslab.probes.ood.probe import OodProbe, OodScores
from stresslab.probes.ood.scores import SCORES

__all__ = ["SCORES", "OodProbe", "OodScores"]
