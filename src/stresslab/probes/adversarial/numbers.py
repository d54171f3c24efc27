"""The probe's metrics from a :class:`SweepResult`, leaving undefined values out.

A mean over zero images (no image attacked, no image fooled) is undefined: it is left out
of the metrics rather than written as 0 or 1, and :class:`Metrics` says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stresslab.metrics.flips import first_change
from stresslab.probes.adversarial.sweep import AttackRun, SweepResult, mean_or_none
from stresslab.probes.adversarial.threats import eps_key

# The key prefix of the whole-test-set attack's metrics (the adversarial confusion matrix).
WHOLE_KEY = "fgsm_test_set"


@dataclass
class Metrics:
    """Flat metrics (finite floats) and the keys left out because their value is undefined."""

    values: dict[str, float] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)  # key -> why

    def put(self, key: str, value: float | None, why: str) -> None:
        """Set ``key`` to ``value``, or note it as undefined (``why``) when ``value`` is None."""
        if value is None:
            self.undefined[key] = why
        else:
            self.values[key] = value

    def warnings(self) -> list[str]:
        """One sentence per reason for the keys left out."""
        by_reason: dict[str, list[str]] = {}
        for key, why in self.undefined.items():
            by_reason.setdefault(why, []).append(key)
        return [
            f"left out of the metrics as undefined ({why}): {', '.join(keys)}"
            for why, keys in by_reason.items()
        ]


def similar_up_to(run: AttackRun, threshold: float) -> float | None:
    """The largest epsilon of ``run``'s sweep up to which (inclusive) the mean SSIM stays at
    least ``threshold`` at every epsilon; ``None`` if not measured or already below at the first."""
    last = None
    for e, sim in zip(run.epsilons, run.mean_ssim(), strict=True):
        if sim is None or sim < threshold:
            break
        last = e
    return last


def probe_metrics(res: SweepResult, ssim_threshold: float = 0.95) -> Metrics:
    """Clean accuracy, accuracy per attack and epsilon (``<name>.acc_eps<eps>``) and the mean
    SSIM of its images to the clean ones (``<name>.ssim_eps<eps>``, Wang et al., 2004) with the
    largest epsilon up to which it stays at least ``ssim_threshold``
    (``<name>.ssim_threshold_epsilon``), accuracy with a doubled setting
    (``<name>.acc_2x_<setting>``), robust accuracy per norm and its epsilon, mean confidence
    under attack (all images, fooled ones) at the reporting epsilon, and accuracy and mean
    confidence of the whole-test-set attack. Accuracies and confidences are fractions in
    [0, 1]; epsilons pixel units."""
    m = Metrics()
    none = "no image attacked"
    m.put("clean_accuracy", mean_or_none(res.clean.correct), none)
    m.values["n_images"] = float(len(res.labels))
    m.values["ssim_threshold"] = ssim_threshold
    for run in res.runs:
        for e, acc, sim in zip(run.epsilons, run.accuracy(), run.mean_ssim(), strict=True):
            m.put(f"{run.name}.acc_eps{eps_key(e)}", acc, none)
            m.put(f"{run.name}.ssim_eps{eps_key(e)}", sim, none)
        m.put(f"{run.name}.ssim_threshold_epsilon", similar_up_to(run, ssim_threshold), none)
    for run in res.convergence:
        m.put(f"{run.name}.acc_2x_{run.doubled}", run.accuracy()[0], none)
    for norm in res.norms():
        tm = res.threats[norm]
        m.put(tm.robust_key, mean_or_none(res.robust(norm)), none)
        m.values[tm.epsilon_key] = tm.epsilon
        for run in res.runs:
            if run.norm != norm or tm.epsilon not in run.epsilons:
                continue
            j = run.epsilons.index(tm.epsilon)
            conf, fooled = run.confidence[j], ~run.correct[j]
            m.put(f"{run.name}.mean_adv_confidence", mean_or_none(conf), none)
            m.put(
                f"{run.name}.mean_adv_confidence_fooled",
                mean_or_none(conf[fooled]),
                f"no image misclassified at epsilon {tm.epsilon:.4g}",
            )
    m.put(f"{WHOLE_KEY}.accuracy", res.whole.accuracy()[0], none)
    m.put(f"{WHOLE_KEY}.mean_confidence", mean_or_none(res.whole.confidence[0]), none)
    return m


def flips(found: SweepResult) -> dict[str, dict[str, list[Any]]]:
    """Per attacked image (the record's ``index`` order) and norm: the smallest epsilon of the
    main sweeps at which some attack changed its prediction from the clean one
    (``flip_epsilon``, pixel units; None: none did up to the largest epsilon) and which attack
    (``flip_attack``, the first in run order at that epsilon). An attack starts from the true
    label, so for a misclassified image a change is where one was measured, not a search."""
    eps: dict[str, list[Any]] = {}
    attack: dict[str, list[Any]] = {}
    for norm in found.norms():
        steps = [
            (e, r.name, r.preds[j])
            for r in found.runs
            if r.norm == norm and len(r.preds) == len(r.epsilons)
            for j, e in enumerate(r.epsilons)
            if e > 0
        ]
        eps[norm], attack[norm] = first_change(found.clean.preds, steps)
    return {"flip_epsilon": eps, "flip_attack": attack}
