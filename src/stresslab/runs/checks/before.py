"""What can be checked of a ``checks:`` section before a run starts: every metric key names
a probe the run will run, and the baseline is a finished run on the same test images."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np

from stresslab.errors import ConfigError
from stresslab.runs.checks.baseline import baseline_dir
from stresslab.runs.checks.spec import ChecksConfig
from stresslab.runs.saved_predictions import FILENAME, load_predictions


def check_before_run(
    checks: ChecksConfig, probes: Iterable[str], test_index: np.ndarray | None = None
) -> None:
    """Raise :class:`ConfigError` when a condition's key starts with a probe the run does not
    run (naming the closest probes), when the baseline is not a finished run, or when its
    test images differ from ``test_index`` (the run's official test indices)."""
    names = list(probes)
    for key in checks.conditions:
        probe = key.split(".", 1)[0]
        if any(c in probe for c in "*?[") or probe in names:
            continue
        close = difflib.get_close_matches(probe, names, n=3, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"checks: unknown metric key {key!r}: the run has no probe {probe!r} "
            f"(its probes: {', '.join(names)}){hint}"
        )
    if checks.baseline is None:
        return
    old = load_predictions(baseline_dir(checks.baseline) / FILENAME)
    if test_index is not None and sorted(old.index.tolist()) != sorted(np.asarray(test_index).tolist()):
        raise ConfigError(
            f"checks.baseline: {checks.baseline.run} was tested on {len(old.index)} images, this run "
            f"would test on {len(test_index)} other or different ones; compare runs on the same test set "
            "(data.dataset, data.test_subset)"
        )
