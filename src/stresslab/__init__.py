"""stresslab: stress-test image classifiers and write one report on how and why they fail.

The public API: ``run`` (a study, as ``stresslab run`` does), ``probe`` (a model already in
memory, on arrays or a Dataset), ``load`` (a finished run), each returning a ``Run``; the
registries (``DATASETS``, ``MODELS``, ``PROBES``, ``ATTRIBUTIONS`` of the attribution methods,
``ATTACKS``, ``CORRUPTIONS``), the base classes a new part builds on, ``RunConfig`` and
``execute`` (one run end to end, lower level). Names load on first use, so
``import stresslab`` itself stays cheap (no torch until a name needs it).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library logs and lets the application decide what to show: without this handler
# Python would print the library's warnings to stderr on its own.
logging.getLogger("stresslab").addHandler(logging.NullHandler())

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "run": "stresslab.api",
    "probe": "stresslab.api",
    "load": "stresslab.api",
    "Run": "stresslab.runs.loaded",
    "DATASETS": "stresslab.data",
    "MODELS": "stresslab.models",
    "PROBES": "stresslab.probes",
    "ATTRIBUTIONS": "stresslab.attributions",
    "ATTACKS": "stresslab.attacks",
    "CORRUPTIONS": "stresslab.corruptions",
    "Probe": "stresslab.probes",
    "ProbeResult": "stresslab.probes",
    "ProbeContext": "stresslab.probes",
    "Table": "stresslab.probes",
    "Headline": "stresslab.probes",
    "Offer": "stresslab.probes",
    "register_probe": "stresslab.probes",
    "Attribution": "stresslab.attributions",
    "Attack": "stresslab.attacks",
    "register_attack": "stresslab.attacks",
    "register_attribution": "stresslab.attributions",
    "register_dataset": "stresslab.data",
    "register_corruption": "stresslab.corruptions",
    "register_model": "stresslab.models",
    "load_plugins": "stresslab.plugins",
    "Classifier": "stresslab.models",
    "RunConfig": "stresslab.runs.config",
    "execute": "stresslab.runs.execute",
}

__all__ = [
    "ATTACKS",
    "ATTRIBUTIONS",
    "CORRUPTIONS",
    "DATASETS",
    "MODELS",
    "PROBES",
    "Attack",
    "Attribution",
    "Classifier",
    "Headline",
    "Offer",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Run",
    "RunConfig",
    "Table",
    "__version__",
    "execute",
    "load",
    "load_plugins",
    "probe",
    "register_attack",
    "register_attribution",
    "register_corruption",
    "register_dataset",
    "register_model",
    "register_probe",
    "run",
]

if TYPE_CHECKING:
    from stresslab.api import load, probe, run
    from stresslab.attacks import ATTACKS, Attack, register_attack
    from stresslab.attributions import ATTRIBUTIONS, Attribution, register_attribution
    from stresslab.corruptions import CORRUPTIONS, register_corruption
    from stresslab.data import DATASETS, register_dataset
    from stresslab.models import MODELS, Classifier, register_model
    from stresslab.plugins import load_plugins
    from stresslab.probes import (
        PROBES,
        Headline,
        Offer,
        Probe,
        ProbeContext,
        ProbeResult,
        Table,
        register_probe,
    )
    from stresslab.runs.config import RunConfig
    from stresslab.runs.execute import execute
    from stresslab.runs.loaded import Run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stresslab' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = getattr(mod, name, None)
    if value is None:
        raise AttributeError(f"module 'stresslab' has no attribute {name!r} ({module} does not define it)")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
