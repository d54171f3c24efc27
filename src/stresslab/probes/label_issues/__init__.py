"""The ``label_issues`` probe (importing this registers it): confident learning through
cleanlab on out-of-sample probabilities. ``confident`` finds and ranks the issues,
``cross_val`` makes out-of-fold probabilities for the training set, ``present`` builds the
report's parts and ``probe`` ties them together."""

from stresslab.probes.label_issues.confident import (
    FILTER_BY,
    RANK_BY,
    LabelIssues,
    class_thresholds,
    find_issues,
)
from stresslab.probes.label_issues.cross_val import OutOfFold, out_of_fold_probs, stratified_folds
from stresslab.probes.label_issues.probe import LabelIssuesProbe

__all__ = [
    "FILTER_BY",
    "RANK_BY",
    "LabelIssues",
    "LabelIssuesProbe",
    "OutOfFold",
    "class_thresholds",
    "find_issues",
    "out_of_fold_probs",
    "stratified_folds",
]
