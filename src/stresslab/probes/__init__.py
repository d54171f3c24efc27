"""Probes: importing this package registers every built-in probe in ``PROBES``."""

from stresslab.probes import adversarial as _adversarial  # noqa: F401
from stresslab.probes import calibration as _calibration  # noqa: F401
from stresslab.probes import corruption as _corruption  # noqa: F401
from stresslab.probes import data_audit as _data_audit  # noqa: F401
from stresslab.probes import evaluation as _evaluation  # noqa: F401
from stresslab.probes import explain as _explain  # noqa: F401
from stresslab.probes import failures as _failures  # noqa: F401
from stresslab.probes import label_issues as _label_issues  # noqa: F401
from stresslab.probes import ood as _ood  # noqa: F401
from stresslab.probes import representation as _representation  # noqa: F401
from stresslab.probes import shortcut as _shortcut  # noqa: F401
from stresslab.probes.base import (
    PROBES,
    Headline,
    Offer,
    Probe,
    ProbeContext,
    ProbeResult,
    Table,
    build_probe,
    register_probe,
)

__all__ = [
    "PROBES",
    "Headline",
    "Offer",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Table",
    "build_probe",
    "register_probe",
]
