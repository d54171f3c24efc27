"""Which attacks the probe runs, with which settings: ``attacks`` as a list of registry names
(default settings) or a mapping ``name -> settings``, and the deprecated flat settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stresslab.attacks import ATTACKS, Attack
from stresslab.errors import ConfigError

logger = logging.getLogger(__name__)

# Settings the probe once took for every attack at once; each now belongs to an attack.
LEGACY_SETTINGS: tuple[str, ...] = ("steps", "step_size", "restarts", "random_start", "early_stop", "loss")

AttackSpec = Sequence[str] | Mapping[str, Mapping[str, Any] | None]


def _flow(mapping: Mapping[str, Any]) -> str:
    """A mapping in YAML flow style, as a user would write it: ``{steps: 20, loss: ce}``."""

    def value(v: Any) -> str:
        if isinstance(v, Mapping):
            return _flow(v)
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    return "{" + ", ".join(f"{k}: {value(v)}" for k, v in mapping.items()) + "}"


def build_attacks(attacks: AttackSpec, legacy: Mapping[str, Any]) -> dict[str, Attack]:
    """The attacks to run, by registry name (``"pgd_linf"``), in the order given.

    ``attacks`` is a list of names (default settings) or a mapping from name to settings
    (``{pgd_linf: {steps: 20}, fgsm_linf: {}}``). ``legacy`` holds the deprecated flat
    settings (``None``: not given); each one given goes to every attack that takes it,
    below the attack's own settings, and logs a warning showing the per-attack form. An
    unknown name or setting is a :class:`ConfigError` naming
    ``probes.adversarial.attacks.<name>.<key>``.
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
    given = {k: v for k, v in legacy.items() if v is not None}
    for key in ("steps", "restarts"):
        if key in given and int(given[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {given[key]}")
    built: dict[str, Attack] = {}
    moved: dict[str, dict[str, Any]] = {}
    for name, settings in items:
        path = f"probes.adversarial.attacks.{name}"
        if not isinstance(settings, Mapping):
            ATTACKS.get(name, where=path)
            raise ConfigError(f"{path}: expected a mapping of settings, got {settings!r}")
        accepted = ATTACKS.check(name, settings, where=path).setting_names()
        inherited = {k: v for k, v in given.items() if k in accepted and k not in settings}
        if inherited:
            moved[name] = {**inherited, **settings}
        built[name] = ATTACKS.build(name, where=path, **{**inherited, **settings})
    if given:
        logger.warning(
            "probes.adversarial: the flat setting(s) %s are deprecated; give settings per attack, "
            "e.g. attacks: %s",
            ", ".join(sorted(given)),
            _flow({name: moved.get(name, {}) for name in built}),
        )
    return built


def doubled(name: str, attack: Attack, setting: str) -> Attack:
    """A copy of ``attack`` (registered as ``name``) with the integer ``setting`` doubled."""
    settings = attack.settings()
    built: Attack = ATTACKS.build(name, **{**settings, setting: 2 * int(settings[setting])})
    return built


def build_extra(name: str, legacy: Mapping[str, Any]) -> Attack:
    """Attack ``name`` with the deprecated flat settings it takes (for attacks the probe
    runs besides the configured ones, e.g. the whole-test-set attack); no warning."""
    accepted = ATTACKS.settings(name)
    built: Attack = ATTACKS.build(
        name, **{k: v for k, v in legacy.items() if v is not None and k in accepted}
    )
    return built
