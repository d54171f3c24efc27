"""Per-cause fixed / broken / still wrong between a baseline and an arm, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stresslab.study.compare import cause_transitions, mcnemar_exact
from stresslab.study.summary import _cause_cases

# Eight test images (official indices 10..17), baseline vs arm, one seed pair.
COMMON = np.arange(10, 18)
BASE = np.array([0, 0, 0, 0, 0, 1, 1, 1], bool)  # 10-14 wrong
ARM = np.array([1, 1, 0, 1, 0, 0, 1, 0], bool)  # fixes 10, 11, 13; breaks 15, 17
BASE_CAUSES = {10: "label_error", 11: "label_error", 12: "label_error", 13: "ambiguous", 14: "ambiguous"}
ARM_CAUSES = {12: "label_error", 14: "ambiguous", 15: "ambiguous", 17: "model_error"}


def test_cause_transitions_by_hand() -> None:
    got = cause_transitions(BASE, ARM, COMMON, BASE_CAUSES, ARM_CAUSES)
    # label_error: 10, 11 fixed, 12 still wrong; ambiguous: 13 fixed, 14 still wrong, 15 broken;
    # model_error: 17 broken (no baseline failure has that cause).
    assert got == {
        "ambiguous": {"n": 2, "fixed": 1, "broken": 1, "still_wrong": 1, "mcnemar_p": 1.0},
        "label_error": {"n": 3, "fixed": 2, "broken": 0, "still_wrong": 1, "mcnemar_p": 0.5},
        "model_error": {"n": 0, "fixed": 0, "broken": 1, "still_wrong": 0, "mcnemar_p": 1.0},
    }
    assert mcnemar_exact(2, 0) == pytest.approx(0.5)  # 2 * (1/2)^2


def test_failures_without_a_cause_are_counted_as_undiagnosed() -> None:
    got = cause_transitions(BASE, ARM, COMMON, {}, {})
    assert got == {"undiagnosed": {"n": 5, "fixed": 3, "broken": 2, "still_wrong": 2, "mcnemar_p": 1.0}}


def test_means_over_seed_pairs() -> None:
    correct = {"base": {0: BASE, 1: BASE}, "arm": {0: ARM, 1: BASE}}  # seed 1: the arm changes nothing
    causes = {"base": {0: BASE_CAUSES, 1: BASE_CAUSES}, "arm": {0: ARM_CAUSES, 1: BASE_CAUSES}}
    got = _cause_cases(correct, causes, "base", "arm", COMMON)
    assert got["seeds"] == [0, 1]
    label = next(r for r in got["causes"] if r["cause"] == "label_error")
    assert (label["n"], label["fixed"], label["broken"], label["still_wrong"]) == (3.0, 1.0, 0.0, 2.0)
    assert label["mcnemar_p"] == [0.5, 1.0] and label["significant"] == 0
    assert label["words"].startswith("of the 3.0 label_error failures of base, arm fixed 1.0 and broke 0.0")
