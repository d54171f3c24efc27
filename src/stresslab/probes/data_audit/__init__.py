"""The ``data_audit`` probe (importing this registers it): ``properties`` measures each image,
``flags`` sets the thresholds from the data, ``duplicates`` finds copies through the shared
search in :mod:`stresslab.metrics.duplicates`, ``present`` builds the report's parts and
``probe`` ties them together."""

from stresslab.probes.data_audit.probe import AuditFlags, DataAuditProbe

__all__ = ["AuditFlags", "DataAuditProbe"]
