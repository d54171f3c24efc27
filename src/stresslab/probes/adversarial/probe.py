"""The ``adversarial`` probe: orchestrates the sweeps, checks and presentation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.attacks import ATTACKS, Attack
from stresslab.attacks.base import Norm, check_epsilon
from stresslab.devices import ATTACK_PIXELS, images_per_pass
from stresslab.metrics.confusion import confusion_counts
from stresslab.probes.adversarial.checks import validity_checks
from stresslab.probes.adversarial.numbers import flips, probe_metrics
from stresslab.probes.adversarial.plan import RETIRED, AttackSpec, build_attacks, doubled
from stresslab.probes.adversarial.present import figures, summary, tables
from stresslab.probes.adversarial.sharded import sharded_clean, sharded_sweep
from stresslab.probes.adversarial.sweep import AttackRun, SweepResult, sweep_units
from stresslab.probes.adversarial.threats import ThreatModel, default_threat_models, eps_key, threat_model
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.scoped import inference_scope

# The attack of the adversarial confusion matrix, run on the whole test set.
CONFUSION_ATTACK = "fgsm_linf"
# The score-based attack run (as ``<name>_<norm>``, default settings) when input gradients
# are zero and no attack that needs no gradient was configured for the norm.
FALLBACK_ATTACK = "square"


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _opt_eps(value: float | None) -> float | None:
    return None if value is None else check_epsilon(value)


@register_probe("adversarial")
class AdversarialProbe(Probe):
    """Accuracy under attack over an epsilon sweep, with validity checks.

    ``attacks`` names registered attacks (``ATTACKS.names()``: ``fgsm_linf``, ``pgd_linf``,
    ``mifgsm_linf``, their ``_l2`` forms, ...), as a list (default settings) or a mapping
    to each attack's settings, e.g. ``{pgd_linf: {steps: 20, restarts: 2}, fgsm_linf: {}}``
    (default: FGSM and PGD L-inf; the L2 forms roughly double the cost). Epsilons are in
    [0, 1] pixel units (normalization stays in the model); ``None`` takes the dataset
    defaults of :func:`default_threat_models`, and 0 and the reporting epsilon are always
    added to a sweep. The reporting epsilon ``epsilon`` (``l2_epsilon``) defaults to the
    largest value of a given sweep, else the dataset default. The flat ``steps``,
    ``step_size``, ``restarts``, ``random_start``, ``early_stop`` and ``loss`` of earlier
    versions are refused (:data:`~stresslab.probes.adversarial.plan.RETIRED`) with the
    per-attack form to write instead.

    Attacks run on ``max_images`` test images (``ctx.sample``: seeded, class-stratified, shared
    with other probes; 0 or ``None``: all), ``batch_size`` images at a time (default: the run's
    batch, at most :data:`~stresslab.devices.ATTACK_PIXELS` input pixels). Robust accuracy at
    ``epsilon`` (``l2_epsilon``) is the worst case per image over the clean image and every
    attack run of that norm, including the convergence runs (each ``iterative`` attack again
    with each of its ``convergence_settings`` doubled). The adversarial confusion matrix uses
    FGSM L-inf at ``confusion_epsilon`` (default ``epsilon``) on the whole test set. Checks
    follow Carlini et al., "On Evaluating Adversarial Robustness" (2019); each fails into a
    warning. Where some attacked image has an all-zero input gradient, the gradient attacks
    cannot move it, so the score-based Square attack (``square_<norm>``, default settings) runs
    as well for each norm attacked that has no attack without gradients configured; it joins the
    worst case, and the summary and ``data["robust_accuracy_set_by"]`` name the attack that set
    robust accuracy. Each attacked image's SSIM to its clean image is measured (Wang et al.,
    2004); the summary gives, per attack, the largest epsilon up to which the mean stays at
    least ``ssim_threshold``. The galleries show, per attack and epsilon, the first
    ``gallery_images`` images the attack flipped (right before, wrong after).
    ``convergence_threshold`` is the largest change in robust accuracy (a fraction) the doubled
    runs may cause; ``tolerance`` the rise in accuracy (a fraction) allowed by the monotonicity,
    iterative-versus-single-step and score-based-versus-gradient checks. Undefined values (a
    mean over no image) are left out of the metrics, blank in tables, and said so."""

    order = 50
    headlines = (
        Headline("robust_accuracy", "robust accuracy (set by {robust_accuracy_set_by})", percent=True),
    )
    retired = RETIRED

    def __init__(
        self,
        *,
        attacks: AttackSpec = ("fgsm_linf", "pgd_linf"),
        epsilons: Sequence[float] | None = None,
        epsilon: float | None = None,
        l2_epsilons: Sequence[float] | None = None,
        l2_epsilon: float | None = None,
        confusion_epsilon: float | None = None,
        max_images: int | None = 1000,
        batch_size: int | None = None,
        convergence_check: bool = True,
        convergence_threshold: float = 0.01,
        tolerance: float = 0.0,
        gallery_images: int = 4,
        ssim_threshold: float = 0.95,
    ) -> None:
        self.attacks: dict[str, Attack] = build_attacks(attacks)
        self.confusion_attack = (
            self.attacks.get(CONFUSION_ATTACK) or build_attacks([CONFUSION_ATTACK])[CONFUSION_ATTACK]
        )
        self.epsilons = None if epsilons is None else [check_epsilon(e) for e in epsilons]
        self.epsilon = _opt_eps(epsilon)
        self.l2_epsilons = None if l2_epsilons is None else [check_epsilon(e) for e in l2_epsilons]
        self.l2_epsilon = _opt_eps(l2_epsilon)
        self.confusion_epsilon = _opt_eps(confusion_epsilon)
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_images must be >= 0 or None, got {max_images}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.max_images = max_images
        self.batch_size = batch_size
        self.convergence_check = bool(convergence_check)
        self.convergence_threshold = float(convergence_threshold)
        self.tolerance = float(tolerance)
        self.gallery_images = max(0, int(gallery_images))
        if not 0.0 < ssim_threshold <= 1.0:
            raise ValueError(f"ssim_threshold must be in (0, 1], got {ssim_threshold}")
        self.ssim_threshold = float(ssim_threshold)

    def threats(self, ctx: ProbeContext) -> dict[Norm, ThreatModel]:
        """The sweep and reporting epsilon per norm for this dataset and these settings."""
        defaults = default_threat_models(ctx.info)
        return {
            "linf": threat_model(defaults["linf"], self.epsilons, self.epsilon),
            "l2": threat_model(defaults["l2"], self.l2_epsilons, self.l2_epsilon),
        }

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        if len(ctx.split.test_y) == 0:
            res.warnings.append("the test set is empty; no attack was run")
            return res
        threats = self.threats(ctx)
        conf_eps = threats["linf"].epsilon if self.confusion_epsilon is None else self.confusion_epsilon
        subset = ctx.sample(self.max_images, "adversarial")
        found = self._sweep(ctx, threats, subset, conf_eps)
        checks = validity_checks(
            found, tolerance=self.tolerance, convergence_threshold=self.convergence_threshold
        )
        metrics = probe_metrics(found, self.ssim_threshold)
        failed = [c for c in checks if not c.passed]
        res.metrics = {**metrics.values, "checks_failed": float(len(failed))}
        res.warnings = [c.warning() for c in failed] + metrics.warnings()
        names = list(ctx.info.class_names)
        res.tables = tables(found, checks, names)
        for stem, (fig, caption) in figures(found, names, conf_eps).items():
            res.figures[stem] = fig
            res.captions[stem] = caption
        res.summary = summary(found, checks, conf_eps, self.ssim_threshold)
        index = ctx.split.test_index[subset]
        res.data = {
            "index": [int(i) for i in index],
            "robust_correct": {n: [bool(v) for v in found.robust(n)] for n in found.norms()},
            **flips(found),
            "epsilons": {n: list(tm.epsilons) for n, tm in threats.items()},
            "accuracy": {r.name: r.accuracy() for r in found.runs},
            **{found.threats[n].robust_key + "_set_by": found.set_by(n) for n in found.norms()},
            **{found.threats[n].robust_key + "_by_attack": found.by_attack(n) for n in found.norms()},
            "added_attacks": {
                name: {
                    "reason": why,
                    "settings": next(r.attack.settings() for r in found.runs if r.name == name),
                }
                for name, why in found.added.items()
            },
            "ssim": {r.name: r.mean_ssim() for r in found.runs},
            "galleries": {
                r.name: {eps_key(e): [int(i) for i in index[g.positions]] for e, g in r.gallery.items()}
                for r in found.runs
            },
            "confusion_epsilon": conf_eps,
            "adversarial_confusion": confusion_counts(
                found.whole_labels, found.whole.preds[0], len(names)
            ).tolist(),
            "checks": [
                {"check": c.check, "scope": c.scope, "result": c.result, "detail": c.detail} for c in checks
            ],
            "settings": {
                "max_images": self.max_images,
                "attacks": {name: a.settings() for name, a in self.attacks.items()},
                "ssim_threshold": self.ssim_threshold,
                "robust_accuracy_set_by": found.set_by("linf") if "linf" in found.norms() else None,
            },
        }
        return res

    def _sweep(
        self, ctx: ProbeContext, threats: dict[Norm, ThreatModel], subset: Tensor, conf_eps: float
    ) -> SweepResult:
        """Run every attack (and its convergence runs) on ``subset``, and the confusion attack
        on the whole test set, with the model in eval mode and frozen."""
        x, y = ctx.split.test_x[subset], ctx.split.test_y[subset].long()
        index = ctx.split.test_index[subset]
        y_all = ctx.split.test_y.long()
        # The run's batch, bounded by pixels: an attack keeps a backward pass's activations.
        bs = self.batch_size or min(ctx.batch_size, images_per_pass(x.shape[2], x.shape[3], ATTACK_PIXELS))
        batches = math.ceil(len(y) / bs)
        model = ctx.model
        # ``track`` is typed as an iterator in the base contract but returns a context manager.
        first: Any = ctx.track("adversarial: clean images", batches)
        with inference_scope(model):
            before = _buffers(model)
            with first as advance:
                clean = sharded_clean(ctx.shards, model, x, y, bs, advance)
            attacks, added = self._with_fallback(clean.zero_gradients, len(y))
            iterative = [(n, a) for n, a in attacks.items() if a.iterative] if self.convergence_check else []
            per_batch = sum(sweep_units(a, len(threats[a.norm].epsilons)) for a in attacks.values())
            per_batch += sum(len(a.convergence_settings) for _, a in iterative)
            total = batches * per_batch + math.ceil(len(y_all) / bs) * sweep_units(self.confusion_attack, 1)
            tracker: Any = ctx.track("adversarial", total)
            with tracker as advance:

                def sweep(run: AttackRun, key: tuple[int | str, ...] | None = None, **kw: Any) -> AttackRun:
                    data = {"x": x, "y": y, "index": index, "clean_correct": clean.correct}
                    return sharded_sweep(
                        ctx.shards, model, run, data, batch_size=bs, advance=advance, key=key, **kw
                    )

                runs = [
                    sweep(
                        AttackRun(name, a, threats[a.norm].epsilons),
                        (ctx.seed, "attack", 1000 + i),
                        gallery=self.gallery_images,
                    )
                    for i, (name, a) in enumerate(attacks.items())
                ]
                convergence = []
                for i, (name, a) in enumerate(iterative):
                    for k, setting in enumerate(a.convergence_settings):
                        run = AttackRun(
                            name,
                            doubled(name, a, setting),
                            (threats[a.norm].epsilon,),
                            f"2x {setting}",
                            setting,
                        )
                        convergence.append(sweep(run, (ctx.seed, "attack", 2000 + 1000 * k + i)))
                whole = sharded_sweep(
                    ctx.shards,
                    model,
                    AttackRun(CONFUSION_ATTACK, self.confusion_attack, (conf_eps,), "whole test set"),
                    {"x": ctx.split.test_x, "y": y_all, "index": ctx.split.test_index},
                    batch_size=bs,
                    advance=advance,
                    measure_ssim=False,
                )
            eval_mode = not any(m.training for m in model.modules())
            after = _buffers(model)
            unchanged = all(torch.equal(v, after[k]) for k, v in before.items())
        return SweepResult(
            threats=threats,
            labels=y,
            clean=clean,
            runs=runs,
            convergence=convergence,
            whole=whole,
            whole_labels=y_all,
            eval_mode=eval_mode,
            buffers_unchanged=unchanged,
            added=added,
        )

    def _with_fallback(self, zero_gradients: int, n: int) -> tuple[dict[str, Attack], dict[str, str]]:
        """The configured attacks, plus Square for each attacked norm without an attack that
        needs no gradient when ``zero_gradients`` of the ``n`` images have a zero input
        gradient; and why each was added."""
        attacks = dict(self.attacks)
        added: dict[str, str] = {}
        if not zero_gradients:
            return attacks, added
        for norm in dict.fromkeys(a.norm for a in self.attacks.values()):
            name = f"{FALLBACK_ATTACK}_{norm}"
            covered = any(not a.uses_gradients for a in self.attacks.values() if a.norm == norm)
            if not covered and name in ATTACKS:
                attacks[name] = ATTACKS.build(name)
                added[name] = (
                    f"{zero_gradients} of {n} attacked images have an all-zero input gradient, "
                    "which gradient attacks cannot follow"
                )
        return attacks, added
