"""Plugins: modules whose import registers datasets, models, probes, attacks, attribution
methods or corruptions, so a config, ``stresslab list`` and ``stresslab run`` see them.

Two ways in:

- an installed package declares the entry-point group ``stresslab.plugins``; each entry
  point's value names a module (``my_pkg.stresslab_parts``). They are imported once per
  process, on first use, by whatever reads the registries for a user (the command line,
  :func:`stresslab.run`, :func:`stresslab.probe`, run preparation);
- a run config's ``plugins:`` key lists importable module paths, imported before the
  config's names are looked up in the registries.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from stresslab.errors import ConfigError

log = logging.getLogger(__name__)

GROUP = "stresslab.plugins"

_entry_points_loaded = False


def _load_entry_point(ep: EntryPoint) -> None:
    dist = ep.dist.name if ep.dist is not None else "an installed package"
    try:
        ep.load()
    except Exception as exc:  # a plugin's own code failed: say which plugin, keep the cause
        raise ConfigError(
            f"plugin {ep.name!r} (entry point {ep.name} = {ep.value} in group {GROUP} of {dist}) "
            f"failed to import: {exc!r}"
        ) from exc
    log.debug("loaded plugin %s (%s) from %s", ep.name, ep.value, dist)


def load_plugins(extra_modules: Sequence[str] = (), where: str = "plugins") -> None:
    """Import every ``stresslab.plugins`` entry point (the first call only), then each of
    ``extra_modules`` (importable module paths, e.g. a config's ``plugins`` list; Python
    imports a module once, so repeating one is free).

    Raises:
        ConfigError: a plugin failed to import; the message names the entry point (name,
            module, package) or the config key (``<where>[i]``) and the module's error.
    """
    global _entry_points_loaded
    if not _entry_points_loaded:
        for ep in entry_points(group=GROUP):
            _load_entry_point(ep)
        _entry_points_loaded = True  # after a failure the next call tries again (and fails as clearly)
    for i, module in enumerate(extra_modules):
        if not isinstance(module, str) or not module:
            raise ConfigError(f"{where}[{i}]: expected an importable module path, got {module!r}")
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"{where}[{i}]: plugin module {module!r} failed to import: {exc!r}") from exc
