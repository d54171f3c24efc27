"""The ``ATTACKS`` registry: one entry per attack and norm, keyed ``"<attack>_<norm>"``.

``ATTACKS.names()`` lists exactly what a config may name (``fgsm_linf``, ``pgd_l2``, ...);
``ATTACKS.build(name, **settings)`` builds the attack with the norm bound by the name (its
settings checked against the class's ``__init__``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stresslab.attacks.base import NORMS, Attack, Norm
from stresslab.registry import Registry


@dataclass(frozen=True)
class AttackEntry:
    """An :class:`Attack` class bound to one norm; calling it builds the attack."""

    name: str
    cls: type[Attack]
    norm: Norm

    def setting_names(self) -> tuple[str, ...]:
        """The settings the attack takes (keyword arguments of its ``__init__`` but ``norm``)."""
        return self.cls.setting_names()

    @property
    def __signature__(self) -> inspect.Signature:
        """The class's signature without ``norm`` (bound by the name), so
        :meth:`Registry.build` checks settings against what a config may set."""
        sig = inspect.signature(self.cls)
        return sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "norm"])

    def __call__(self, **settings: Any) -> Attack:
        """The attack with ``settings``; an unknown setting is a :class:`ConfigError` naming it
        and the closest accepted ones."""
        ATTACKS.check(self.name, settings)
        return self.cls(norm=self.norm, **settings)


ATTACKS: Registry[AttackEntry] = Registry("attack")


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator: register ``cls`` as ``"<name>_<norm>"`` for each norm in ``cls.norms``.

    Sets ``cls.name`` (and ``cls.title`` when empty) and checks the declared capabilities:
    an ``iterative`` attack names the integer settings its convergence check doubles.
    """

    def deco(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        cls.title = cls.title or name.upper()
        settings = cls.setting_names()
        bad = [n for n in cls.norms if n not in NORMS]
        if bad or not cls.norms:
            raise ValueError(f"attack {name}: norms {cls.norms!r} must be a non-empty subset of {NORMS}")
        if cls.iterative != bool(cls.convergence_settings):
            raise ValueError(f"attack {name}: an iterative attack names its convergence_settings, only it")
        missing = [s for s in cls.convergence_settings if s not in settings]
        if missing:
            raise ValueError(f"attack {name}: convergence settings {missing} are not __init__ settings")
        for norm in cls.norms:
            key = f"{name}_{norm}"
            ATTACKS.register(key)(AttackEntry(key, cls, norm))
        return cls

    return deco
