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
        if name not in ATTACKS:
            raise ConfigError(f"{path}: unknown attack {name!r}; registered: {', '.join(ATTACKS.names())}")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings, got {settings!r}")
        entry = ATTACKS.get(name)
        accepted = entry.setting_names()
        for key in settings:
            if key not in accepted:
                raise ConfigError(
                    f"{path}.{key}: unknown setting; {name} accepts {', '.join(accepted) or '(none)'}"
                )
        try:
            built[name] = entry(**settings)
        except (TypeError, ValueError, ConfigError) as e:
            raise ConfigError(f"{path}: {e}") from e
    return built


def doubled(name: str, attack: Attack, setting: str) -> Attack:
    """A copy of ``attack`` (registered as ``name``) with the integer ``setting`` doubled."""
    settings = attack.settings()
    return ATTACKS.get(name)(**{**settings, setting: 2 * int(settings[setting])})
