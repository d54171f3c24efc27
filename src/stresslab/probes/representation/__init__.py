"""The ``representation`` probe, in parts: neighbours, clusters, linear probe, duplicates, map.

Importing this package registers the probe.
"""

from stresslab.probes.representation.probe import RepresentationProbe

__all__ = ["RepresentationProbe"]
