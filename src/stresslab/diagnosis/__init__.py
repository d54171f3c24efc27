"""Why the model fails: every probe's per-image evidence joined into one row per failure,
one cause each (:mod:`~stresslab.diagnosis.rules`), slices, and the study that would fix it.

``diagnose(records, test)`` takes the probes' saved records and the test set's arrays (no
run directory); :func:`to_result` shapes it for the report; :func:`write_csv` writes
``diagnosis.csv``. The run orchestrator calls them after the probes whenever ``evaluation`` ran.
"""

from stresslab.diagnosis.diagnose import Diagnosis, diagnose
from stresslab.diagnosis.present import to_result
from stresslab.diagnosis.records import COLUMNS, TestSet
from stresslab.diagnosis.rules import CAUSES, RULES, Thresholds, decide
from stresslab.diagnosis.suggest import suggest_study
from stresslab.diagnosis.table import ALL_COLUMNS, read_causes, write_csv

__all__ = [
    "ALL_COLUMNS",
    "CAUSES",
    "COLUMNS",
    "RULES",
    "Diagnosis",
    "TestSet",
    "Thresholds",
    "decide",
    "diagnose",
    "read_causes",
    "suggest_study",
    "to_result",
    "write_csv",
]
