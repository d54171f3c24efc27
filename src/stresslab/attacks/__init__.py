"""Adversarial attacks on images in [0, 1] (epsilon in pixel units), one attack per module.

``ATTACKS.names()`` lists them as ``"<attack>_<norm>"`` (``fgsm_linf``, ``pgd_l2``, ...);
build one with ``ATTACKS.build(name, **settings)``.
"""

from stresslab.attacks import fgsm, mifgsm, pgd, square  # noqa: F401  (registers the attacks)
from stresslab.attacks.base import Attack, AttackOutput, perturbation_norms
from stresslab.attacks.fgsm import FGSM
from stresslab.attacks.mifgsm import MIFGSM
from stresslab.attacks.pgd import PGD, pgd_perturb
from stresslab.attacks.registry import ATTACKS, AttackEntry, register_attack
from stresslab.attacks.square import Square

__all__ = [
    "ATTACKS",
    "FGSM",
    "MIFGSM",
    "PGD",
    "Attack",
    "AttackEntry",
    "AttackOutput",
    "Square",
    "perturbation_norms",
    "pgd_perturb",
    "register_attack",
]
