"""The ``ATTACKS`` registry: one entry per attack and norm, keyed ``"<attack>_<norm>"``.

``ATTACKS.names()`` lists exactly what a config may name (``fgsm_linf``, ``pgd_l2``, ...);
``ATTACKS.get(name)(**settings)`` builds the attack with the norm bound by the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stresslab.attacks.base import NORMS, Attack, Norm
from stresslab.errors import ConfigError
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

    def __call__(self, **settings: Any) -> Attack:
        """The attack with ``settings``; an unknown setting is a :class:`ConfigError` naming it."""
        unknown = sorted(set(settings) - set(self.setting_names()))
        if unknown:
            raise ConfigError(
                f"attack {self.name}: unknown setting(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(self.setting_names()) or '(none)'}"
            )
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
