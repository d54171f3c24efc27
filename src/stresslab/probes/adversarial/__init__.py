"""The ``adversarial`` probe (importing this registers it): accuracy under the registered
attacks over epsilon sweeps, worst-case robust accuracy per image and per class, the
adversarial confusion matrix on the whole test set, galleries, and the validity checks of
Carlini et al. (2019).

``threats`` (sweeps per norm), ``plan`` (which attacks, with which settings), ``sweep``
(running them; the typed :class:`SweepResult`), ``checks``, ``numbers`` (metrics),
``present`` (tables, figures, summary) and ``probe`` (ties them together).
"""

from stresslab.probes.adversarial.checks import Check, validity_checks
from stresslab.probes.adversarial.probe import AdversarialProbe
from stresslab.probes.adversarial.sweep import AttackRun, CleanPass, SweepResult
from stresslab.probes.adversarial.threats import ThreatModel, default_threat_models, eps_key

__all__ = [
    "AdversarialProbe",
    "AttackRun",
    "Check",
    "CleanPass",
    "SweepResult",
    "ThreatModel",
    "default_threat_models",
    "eps_key",
    "validity_checks",
]
