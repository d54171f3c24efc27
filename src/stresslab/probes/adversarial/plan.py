"""Which attacks the probe runs, with which settings: ``attacks`` as a list of registry names
(default settings) or a mapping ``name -> settings``; the flat settings of earlier versions
are refused with the per-attack form (``RETIRED``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stresslab.attacks import ATTACKS, Attack
from stresslab.errors import ConfigError

# Settings the probe once took for every attack at once; each now belongs to an attack.
RETIRED: dict[str, str] = {
    key: f"attacks: {{{{pgd_linf: {{{{{key}: {{value}}}}}}}}}} (for each attack that takes it)"
    for key in ("steps", "step_size", "restarts", "random_start", "early_stop", "loss")
}

AttackSpec = Sequence[str] | Mapping[str, Mapping[str, Any] | None]


def build_attacks(attacks: AttackSpec) -> dict[str, Attack]:
    """The attacks to run, by registry name (``"pgd_linf"``), in the order given.

    ``attacks`` is a list of names (default settings) or a mapping from name to settings
    (``{pgd_linf: {steps: 20}, fgsm_linf: {}}``). An unknown name or setting is a
    :class:`ConfigError` naming ``probes.adversarial.attacks.<name>.<key>``.
    """
    items: list[tuple[str, Mapping[str, Any]]]
    if isinstance(attacks, str):
        attacks = [attacks]
    if isinstance(attacks, Mapping):
        items = [(str(k), {} if v is None else v) for k, v in attacks.items()]
    else:
        items = [(str(k), {}) for k in dict.fromkeys(attacks)]
    if not items:
        raise ValueError("attacks must name at least one attack")
    built: dict[str, Attack] = {}
    for name, settings in items:
        path = f"probes.adversarial.attacks.{name}"
        if not isinstance(settings, Mapping):
            ATTACKS.get(name, where=path)
            raise ConfigError(f"{path}: expected a mapping of settings, got {settings!r}")
        built[name] = ATTACKS.build(name, where=path, **settings)
    return built


def doubled(name: str, attack: Attack, setting: str) -> Attack:
    """A copy of ``attack`` (registered as ``name``) with the integer ``setting`` doubled."""
    settings = attack.settings()
    built: Attack = ATTACKS.build(name, **{**settings, setting: 2 * int(settings[setting])})
    return built
