"""Adversarial attacks on images in [0, 1] (epsilon in pixel units), one attack per module.

``ATTACKS.names()`` lists them; build one with ``ATTACKS.get(name)(norm=..., ...)``.
"""

from stresslab.attacks import fgsm, pgd  # noqa: F401  (registers the attacks)
from stresslab.attacks.base import ATTACKS, Attack, AttackOutput, perturbation_norms
from stresslab.attacks.fgsm import FGSM
from stresslab.attacks.pgd import PGD, pgd_perturb

__all__ = ["ATTACKS", "FGSM", "PGD", "Attack", "AttackOutput", "perturbation_norms", "pgd_perturb"]
