"""The ``corruption`` probe: accuracy and calibration under the 15 common corruptions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Accuracies are raw (not normalized by a reference model, as the
paper's mCE is). Importing this package registers the probe. Parts, one job each:

- ``compute``: corrupt the shared test sample, run the model, score it into typed records
  (:class:`SampleLogits` -> :class:`CorruptionScores`, :class:`ClassShift`, :class:`Gallery`);
- ``tables`` and ``figures``: present those records;
- ``summary``: flat metrics, findings in words and warnings;
- ``probe``: the settings and the run that ties them together.

Undefined values (an ECE over non-finite logits, a ratio to a zero accuracy) are left out
of the metrics and are empty cells in the tables, with a warning saying why.
"""

from stresslab.probes.corruption.compute import (
    ClassShift,
    CorruptionGrid,
    CorruptionScores,
    Gallery,
    SampleLogits,
    corruption_salt,
)
from stresslab.probes.corruption.probe import CorruptionProbe
from stresslab.probes.corruption.summary import FEW_IMAGES, RISE_TOLERANCE

__all__ = [
    "FEW_IMAGES",
    "RISE_TOLERANCE",
    "ClassShift",
    "CorruptionGrid",
    "CorruptionProbe",
    "CorruptionScores",
    "Gallery",
    "SampleLogits",
    "corruption_salt",
]
