"""The ``adversarial`` probe: accuracy under FGSM and PGD (L-inf and L2) over an epsilon
sweep, worst-case robust accuracy per image and per class, the adversarial confusion matrix
on the whole test set, galleries, and the validity checks of Carlini et al. (2019)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.attacks import ATTACKS, Attack, perturbation_norms
from stresslab.attacks.base import NORMS, Norm, check_epsilon, check_norm, input_gradient
from stresslab.data.base import DatasetInfo, to_float
from stresslab.errors import ConfigError
from stresslab.metrics.confusion import confusion_counts
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.report.figures import image_gallery, line_figure, matrix_figure
from stresslab.scoped import inference_scope

# Per-pixel slack for the "within epsilon and in [0, 1]" check: x + delta - x in float32
# can exceed epsilon by a few ulps.
_BOUND_SLACK = 1e-5

# Default sweeps, in [0, 1] pixel units. Grayscale: up to 0.1 as on (Fashion-)MNIST and in
# an SVHN FGSM study; color: up to 16/255 around the usual 8/255 of CIFAR-10 and SVHN. L2 radii are
# the usual ones for 28x28x1 (1.5) and 32x32x3 (0.5) images, scaled by sqrt(d / d_ref) for
# other sizes d so that the per-pixel change stays comparable.
_GRAY_LINF = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1)
_GRAY_L2 = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
_COLOR_LINF = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)
_COLOR_L2 = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class ThreatModel:
    """An epsilon sweep for one norm and the epsilon at which robust accuracy is reported."""

    norm: str
    epsilons: tuple[float, ...]
    epsilon: float


def default_threat_models(info: DatasetInfo) -> dict[str, ThreatModel]:
    """Dataset-dependent default sweeps (pixel units), keyed by norm.

    One channel: L-inf ``0 .. 0.1`` (reported at 0.1) and L2 ``0 .. 2`` (at 1.5) for
    28x28 images; three channels: L-inf ``0 .. 16/255`` (at 8/255) and L2 ``0 .. 1``
    (at 0.5) for 32x32 images. L2 values scale with ``sqrt(d / d_ref)``, d = C*H*W.
    """
    gray = info.channels == 1
    d = info.channels * info.height * info.width
    d_ref = 28 * 28 if gray else 3 * 32 * 32
    scale = math.sqrt(d / d_ref) if d > 0 else 1.0
    l2 = tuple(float(f"{e * scale:.3g}") for e in (_GRAY_L2 if gray else _COLOR_L2))
    return {
        "linf": ThreatModel("linf", _GRAY_LINF if gray else _COLOR_LINF, 0.1 if gray else 8 / 255),
        "l2": ThreatModel("l2", l2, float(f"{(1.5 if gray else 0.5) * scale:.3g}")),
    }


def eps_key(epsilon: float) -> str:
    """A short metric-key form of an epsilon: 0.1 -> ``0.1``, 8/255 -> ``0.03137``."""
    return f"{epsilon:.4g}"


def stratified_subset(labels: Tensor, max_images: int | None, generator: torch.Generator) -> Tensor:
    """Sorted indices of at most ``max_images`` items with class shares kept (seeded).

    Items are shuffled with ``generator``, ranked within their class, and taken in order of
    ``rank / class size`` so every class gets its share up to rounding. ``None`` or 0: all.
    """
    n = len(labels)
    if not max_images or max_images >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=generator)
    y = labels[perm].long()
    key = torch.empty(n, dtype=torch.float64)
    for c in torch.unique(y):
        pos = (y == c).nonzero().squeeze(1)
        key[pos] = (torch.arange(len(pos), dtype=torch.float64) + 0.5) / len(pos)
    order = torch.argsort(key, stable=True)
    return perm[order[:max_images]].sort().values


@dataclass
class _Run:
    """What one attack configuration found on the attacked subset, per epsilon."""

    spec: str
    norm: Norm
    epsilons: tuple[float, ...]
    correct: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) bool
    preds: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) int64
    confidence: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) float
    norm_excess: float = 0.0  # largest ||delta||_p - epsilon seen
    box_excess: float = 0.0  # largest distance outside [0, 1] seen
    gallery: dict[float, Tensor] = field(default_factory=dict)  # epsilon -> (g, C, H, W)

    def accuracy(self) -> list[float]:
        return [float(c.float().mean()) if len(c) else 0.0 for c in self.correct]


def _parse_spec(spec: str) -> tuple[str, str]:
    kind, _, norm = spec.rpartition("_")
    if kind not in ATTACKS or norm not in NORMS:
        choices = [f"{a}_{n}" for a in ATTACKS.names() for n in NORMS]
        raise ConfigError(f"adversarial: unknown attack {spec!r}; choose from {', '.join(choices)}")
    return kind, norm


def _sweep_with(values: Sequence[float] | None, default: ThreatModel, epsilon: float | None) -> ThreatModel:
    """User or default sweep; 0 and the reporting epsilon are always included.

    The reporting epsilon is ``epsilon`` if given, else the largest of a user's sweep, else
    the dataset default.
    """
    eps = {check_epsilon(e) for e in (default.epsilons if values is None else values)}
    if epsilon is not None:
        ref = check_epsilon(epsilon)
    elif values is not None and eps:
        ref = max(eps)
    else:
        ref = default.epsilon
    return ThreatModel(default.norm, tuple(sorted(eps | {0.0, ref})), ref)


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


@register_probe("adversarial")
class AdversarialProbe(Probe):
    """Accuracy under attack over an epsilon sweep, with validity checks.

    Attacks are ``"<attack>_<norm>"`` names: ``fgsm_linf``, ``fgsm_l2``, ``pgd_linf``,
    ``pgd_l2`` (default: the two L-inf ones; the L2 pair roughly doubles the cost).
    Epsilons are in [0, 1] pixel units (normalization stays in the model);
    ``None`` takes the dataset defaults of :func:`default_threat_models`, and 0 and the
    reporting epsilon are always added to a sweep. The reporting epsilon ``epsilon``
    (``l2_epsilon``) defaults to the largest value of a given sweep, else the dataset
    default. PGD takes ``steps`` steps of ``step_size`` (``None``: ``2.5 * epsilon /
    steps``) from a ``random_start``, rerun ``restarts`` times on unbroken images, stopping
    per image at the first misclassified iterate when ``early_stop``; ``loss`` is ``"ce"``
    or ``"margin"``. The FGSM sweep takes one gradient for all epsilons.

    Attacks run on ``max_images`` test images (a seeded class-stratified choice; 0 or
    ``None``: all). Robust accuracy at ``epsilon`` (``l2_epsilon``) is the worst case per
    image over the clean image and every attack run of that norm, including the
    convergence runs (PGD with twice the steps and twice the restarts). The adversarial
    confusion matrix uses FGSM L-inf at ``confusion_epsilon`` (default ``epsilon``) on the
    whole test set. Checks follow Carlini et al., "On Evaluating Adversarial Robustness"
    (2019); each fails into a warning. ``convergence_threshold`` is the largest change in
    robust accuracy (a fraction) the doubled runs may cause; ``tolerance`` the rise in
    accuracy (a fraction) allowed by the monotonicity and PGD-versus-FGSM checks.
    """

    order = 50
    headlines = (Headline("robust_accuracy", "robust accuracy", percent=True),)

    def __init__(
        self,
        *,
        attacks: Sequence[str] = ("fgsm_linf", "pgd_linf"),
        epsilons: Sequence[float] | None = None,
        epsilon: float | None = None,
        l2_epsilons: Sequence[float] | None = None,
        l2_epsilon: float | None = None,
        confusion_epsilon: float | None = None,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = True,
        loss: str = "ce",
        max_images: int | None = 1000,
        batch_size: int | None = None,
        convergence_check: bool = True,
        convergence_threshold: float = 0.01,
        tolerance: float = 0.0,
        gallery_images: int = 4,
    ) -> None:
        if not attacks:
            raise ValueError("attacks must name at least one attack")
        self.specs = [(s, *_parse_spec(s)) for s in dict.fromkeys(attacks)]
        self.epsilons = None if epsilons is None else [check_epsilon(e) for e in epsilons]
        self.epsilon = None if epsilon is None else check_epsilon(epsilon)
        self.l2_epsilons = None if l2_epsilons is None else [check_epsilon(e) for e in l2_epsilons]
        self.l2_epsilon = None if l2_epsilon is None else check_epsilon(l2_epsilon)
        self.confusion_epsilon = None if confusion_epsilon is None else check_epsilon(confusion_epsilon)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_images must be >= 0 or None, got {max_images}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.attack_settings: dict[str, Any] = {
            "loss": loss,
            "steps": int(steps),
            "step_size": step_size,
            "random_start": bool(random_start),
            "restarts": int(restarts),
            "early_stop": bool(early_stop),
        }
        self.max_images = max_images
        self.batch_size = batch_size
        self.convergence_check = bool(convergence_check)
        self.convergence_threshold = float(convergence_threshold)
        self.tolerance = float(tolerance)
        self.gallery_images = max(0, int(gallery_images))
        # Fail at construction on a bad setting rather than halfway through a run.
        for _, kind, norm in self.specs:
            self._attack(kind, norm)

    def _attack(self, kind: str, norm: str, **overrides: Any) -> Attack:
        cls = ATTACKS.get(kind)
        accepted = inspect.signature(cls.__init__).parameters
        settings = {k: v for k, v in {**self.attack_settings, **overrides}.items() if k in accepted}
        return cls(norm=norm, **settings)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        defaults = default_threat_models(ctx.info)
        threats = {
            "linf": _sweep_with(self.epsilons, defaults["linf"], self.epsilon),
            "l2": _sweep_with(self.l2_epsilons, defaults["l2"], self.l2_epsilon),
        }
        conf_eps = threats["linf"].epsilon if self.confusion_epsilon is None else self.confusion_epsilon
        y_all = ctx.split.test_y.long()
        if len(y_all) == 0:
            res.warnings.append("the test set is empty; no attack was run")
            return res
        subset = stratified_subset(y_all, self.max_images, ctx.generator(101))
        x = to_float(ctx.split.test_x[subset])
        y = y_all[subset]
        bs = self.batch_size or ctx.batch_size
        model, device = ctx.model, ctx.device
        n_batches = math.ceil(len(y) / bs)
        pgd_specs = [s for s in self.specs if s[1] == "pgd"]
        total = n_batches * (1 + len(self.specs) + (2 * len(pgd_specs) if self.convergence_check else 0))
        total += math.ceil(len(y_all) / bs)

        checks: list[list[Any]] = []
        # ``track`` is typed as an iterator in the base contract but returns a context manager.
        tracker: Any = ctx.track("adversarial", total)
        with tracker as advance, inference_scope(model):
            buffers_before = _buffers(model)
            clean_correct, clean_preds, zero_grad = self._clean_pass(model, x, y, bs, device, advance)
            gallery_idx = clean_correct.nonzero().squeeze(1)[: self.gallery_images]
            runs: list[_Run] = []
            for i, (spec, kind, norm) in enumerate(self.specs):
                tm = threats[norm]
                runs.append(
                    self._sweep(
                        spec,
                        self._attack(kind, norm),
                        norm,
                        tm.epsilons,
                        model,
                        x,
                        y,
                        bs,
                        device,
                        ctx.generator(1000 + i),
                        gallery_idx,
                        advance,
                    )
                )
            conv_runs: dict[str, tuple[_Run, _Run]] = {}
            if self.convergence_check:
                for i, (spec, kind, norm) in enumerate(pgd_specs):
                    ref = (threats[norm].epsilon,)
                    steps2 = self._attack(kind, norm, steps=2 * int(self.attack_settings["steps"]))
                    restarts2 = self._attack(kind, norm, restarts=2 * int(self.attack_settings["restarts"]))
                    conv_runs[spec] = (
                        self._sweep(
                            f"{spec} (2x steps)",
                            steps2,
                            norm,
                            ref,
                            model,
                            x,
                            y,
                            bs,
                            device,
                            ctx.generator(2000 + i),
                            gallery_idx[:0],
                            advance,
                        ),
                        self._sweep(
                            f"{spec} (2x restarts)",
                            restarts2,
                            norm,
                            ref,
                            model,
                            x,
                            y,
                            bs,
                            device,
                            ctx.generator(3000 + i),
                            gallery_idx[:0],
                            advance,
                        ),
                    )
            full = self._sweep(
                "fgsm_linf (whole test set)",
                self._attack("fgsm", "linf"),
                "linf",
                (conf_eps,),
                model,
                None,
                y_all,
                bs,
                device,
                None,
                gallery_idx[:0],
                advance,
                test_x=ctx.split.test_x,
            )
            eval_mode = not any(m.training for m in model.modules())
            buffers_same = all(torch.equal(v, _buffers(model)[k]) for k, v in buffers_before.items())

        names = list(ctx.info.class_names)
        clean_acc = float(clean_correct.float().mean())
        res.metrics["clean_accuracy"] = clean_acc
        res.metrics["n_images"] = float(len(y))
        for run in runs:
            for e, acc in zip(run.epsilons, run.accuracy(), strict=True):
                res.metrics[f"{run.spec}.acc_eps{eps_key(e)}"] = acc

        for spec, (more_steps, more_restarts) in conv_runs.items():
            res.metrics[f"{spec}.acc_2x_steps"] = more_steps.accuracy()[0]
            res.metrics[f"{spec}.acc_2x_restarts"] = more_restarts.accuracy()[0]

        robust: dict[str, Tensor] = {}
        for norm, tm in threats.items():
            pool = [r for r in runs if r.norm == norm]
            if not pool:
                continue
            pool += [r for spec, pair in conv_runs.items() if pair[0].norm == norm for r in pair]
            robust[norm] = self._worst(clean_correct, pool, tm.epsilon)
            suffix = "" if norm == "linf" else "_l2"
            res.metrics[f"robust_accuracy{suffix}"] = float(robust[norm].float().mean())
            res.metrics["epsilon" if norm == "linf" else "l2_epsilon"] = tm.epsilon
            for run in pool:
                if tm.epsilon in run.epsilons and "(" not in run.spec:
                    j = run.epsilons.index(tm.epsilon)
                    conf = run.confidence[j]
                    fooled = ~run.correct[j]
                    res.metrics[f"{run.spec}.mean_adv_confidence"] = float(conf.mean())
                    res.metrics[f"{run.spec}.mean_adv_confidence_fooled"] = (
                        float(conf[fooled].mean()) if bool(fooled.any()) else 0.0
                    )

        full_acc = full.accuracy()[0]
        res.metrics["fgsm_test_set.accuracy"] = full_acc
        res.metrics["fgsm_test_set.mean_confidence"] = float(full.confidence[0].mean())

        checks = self._checks(
            runs, conv_runs, full, clean_correct, clean_preds, threats, zero_grad, eval_mode, buffers_same
        )
        failed = [c for c in checks if c[2] == "fail"]
        res.metrics["checks_failed"] = float(len(failed))
        for c in failed:
            res.warnings.append(f"check failed: {c[0]} ({c[1]}): {c[3]}")

        self._tables(res, runs, threats, robust, clean_correct, y, names, checks, conv_runs)
        self._figures(res, runs, threats, full, y_all, names, conf_eps, x, y, gallery_idx, clean_preds)

        res.summary.append(
            f"Clean accuracy {clean_acc:.2%} on {len(y)} test images; robust accuracy "
            + ", ".join(
                f"{res.metrics['robust_accuracy' + ('' if n == 'linf' else '_l2')]:.2%} at "
                f"{'L-inf' if n == 'linf' else 'L2'} epsilon {threats[n].epsilon:.4g}"
                for n in robust
            )
            + " (worst case per image over all attacks run)."
        )
        res.summary.append(
            f"FGSM L-inf at epsilon {conf_eps:.4g} on all {len(y_all)} test images: accuracy {full_acc:.2%}."
        )
        res.summary.append(
            f"{len(checks) - len(failed)} of {len(checks)} validity checks passed"
            + (": see the warnings." if failed else ".")
        )
        res.data = {
            "index": [int(i) for i in ctx.split.test_index[subset]],
            "robust_correct": {n: [bool(v) for v in t] for n, t in robust.items()},
            "epsilons": {n: list(tm.epsilons) for n, tm in threats.items()},
            "accuracy": {r.spec: r.accuracy() for r in runs},
            "confusion_epsilon": conf_eps,
            "adversarial_confusion": confusion_counts(y_all, full.preds[0], len(names)).tolist(),
            "checks": [{"check": c[0], "scope": c[1], "result": c[2], "detail": c[3]} for c in checks],
            "settings": {**self.attack_settings, "max_images": self.max_images},
        }
        return res

    # -- attack passes -------------------------------------------------------------------

    @staticmethod
    def _clean_pass(
        model: nn.Module, x: Tensor, y: Tensor, bs: int, device: torch.device, advance: Any
    ) -> tuple[Tensor, Tensor, int]:
        """Clean correctness (n,), predictions (n,) and the number of zero input gradients."""
        correct, preds, zero = [], [], 0
        for i in range(0, len(y), bs):
            xb, yb = x[i : i + bs].to(device), y[i : i + bs].to(device)
            grad, logits = input_gradient(model, xb, yb)
            zero += int((grad.flatten(1).abs().amax(dim=1) == 0).sum())
            p = logits.argmax(dim=1)
            preds.append(p.cpu())
            correct.append((p == yb).cpu())
            advance(1)
        return torch.cat(correct), torch.cat(preds), zero

    @staticmethod
    def _sweep(
        spec: str,
        attack: Attack,
        norm: str,
        epsilons: Sequence[float],
        model: nn.Module,
        x: Tensor | None,
        y: Tensor,
        bs: int,
        device: torch.device,
        generator: torch.Generator | None,
        gallery_idx: Tensor,
        advance: Any,
        test_x: Tensor | None = None,
    ) -> _Run:
        """Run ``attack`` at every epsilon over ``x`` (or uint8 ``test_x``) in batches."""
        run = _Run(spec, check_norm(norm), tuple(epsilons))
        correct: list[list[Tensor]] = [[] for _ in epsilons]
        preds: list[list[Tensor]] = [[] for _ in epsilons]
        conf: list[list[Tensor]] = [[] for _ in epsilons]
        gal: list[list[Tensor]] = [[] for _ in epsilons]
        for i in range(0, len(y), bs):
            src = test_x[i : i + bs] if test_x is not None else x[i : i + bs]  # type: ignore[index]
            xb, yb = to_float(src).to(device), y[i : i + bs].to(device)
            outs = attack.sweep(model, xb, yb, epsilons, generator=generator)
            in_batch = gallery_idx[(gallery_idx >= i) & (gallery_idx < i + bs)] - i
            for j, (e, out) in enumerate(zip(epsilons, outs, strict=True)):
                delta = out.images - xb
                run.norm_excess = max(run.norm_excess, float((perturbation_norms(delta, run.norm) - e).max()))
                outside = torch.maximum(-out.images, out.images - 1)
                run.box_excess = max(run.box_excess, float(outside.max()))
                prob = out.logits.float().softmax(dim=1)
                c, p = prob.max(dim=1)
                preds[j].append(p.cpu())
                correct[j].append((p == yb).cpu())
                conf[j].append(c.cpu())
                if len(in_batch):
                    gal[j].append(out.images[in_batch.to(device)].cpu())
            advance(1)
        run.correct = [torch.cat(c) for c in correct]
        run.preds = [torch.cat(p) for p in preds]
        run.confidence = [torch.cat(c) for c in conf]
        run.gallery = {e: torch.cat(g) for e, g in zip(epsilons, gal, strict=True) if g}
        return run

    @staticmethod
    def _worst(clean_correct: Tensor, pool: list[_Run], epsilon: float) -> Tensor:
        """Per image (n,): right on the clean image and under every run at ``epsilon``."""
        ok = clean_correct.clone()
        for run in pool:
            if epsilon in run.epsilons:
                ok &= run.correct[run.epsilons.index(epsilon)]
        return ok

    # -- checks ---------------------------------------------------------------------------

    def _checks(
        self,
        runs: list[_Run],
        conv_runs: dict[str, tuple[_Run, _Run]],
        full: _Run,
        clean_correct: Tensor,
        clean_preds: Tensor,
        threats: dict[str, ThreatModel],
        zero_grad: int,
        eval_mode: bool,
        buffers_same: bool,
    ) -> list[list[Any]]:
        """Rows ``[check, scope, "pass" | "fail", detail]`` (Carlini et al., 2019)."""
        rows: list[list[Any]] = []
        n = len(clean_correct)

        def add(check: str, scope: str, ok: bool, detail: str) -> None:
            rows.append([check, scope, "pass" if ok else "fail", detail])

        clean_acc = float(clean_correct.float().mean())
        for run in runs:
            j = run.epsilons.index(0.0)
            changed = int((run.preds[j] != clean_preds).sum())
            add(
                "epsilon 0 gives clean accuracy",
                run.spec,
                changed == 0,
                f"accuracy {run.accuracy()[j]:.4f} vs clean {clean_acc:.4f}; {changed} predictions differ",
            )
        for run in runs:
            acc = run.accuracy()
            rises = [
                f"{acc[k]:.4f} at {run.epsilons[k]:.4g} -> {acc[k + 1]:.4f} at {run.epsilons[k + 1]:.4g}"
                for k in range(len(acc) - 1)
                if acc[k + 1] > acc[k] + self.tolerance
            ]
            add(
                "accuracy does not rise with epsilon",
                run.spec,
                not rises,
                "; ".join(rises) if rises else f"non-increasing over {len(acc)} epsilons",
            )
        for norm in NORMS:
            fgsm = [r for r in runs if r.spec == f"fgsm_{norm}"]
            pgd = [r for r in runs if r.spec == f"pgd_{norm}"]
            if not (fgsm and pgd):
                continue
            f_acc = dict(zip(fgsm[0].epsilons, fgsm[0].accuracy(), strict=True))
            worse = [
                f"epsilon {e:.4g}: PGD {a:.4f} > FGSM {f_acc[e]:.4f}"
                for e, a in zip(pgd[0].epsilons, pgd[0].accuracy(), strict=True)
                if e in f_acc and a > f_acc[e] + self.tolerance
            ]
            add("PGD does no worse than FGSM", norm, not worse, "; ".join(worse) or "at every epsilon")
        for spec, (steps2, restarts2) in conv_runs.items():
            base = next(r for r in runs if r.spec == spec)
            e = threats[base.norm].epsilon
            ref_acc = base.accuracy()[base.epsilons.index(e)]
            for label, other in (("steps", steps2), ("restarts", restarts2)):
                diff = abs(other.accuracy()[0] - ref_acc)
                add(
                    f"doubling {label} changes robust accuracy by < {self.convergence_threshold:.2%}",
                    f"{spec} at {e:.4g}",
                    diff < self.convergence_threshold,
                    f"{ref_acc:.4f} -> {other.accuracy()[0]:.4f}"
                    + ("" if diff < self.convergence_threshold else "; the attack has not converged"),
                )
        add(
            "input gradients are non-zero",
            "clean images",
            zero_grad == 0,
            f"{zero_grad} of {n} images have an all-zero input gradient"
            + (
                "; gradient-based attacks cannot move them (saturated softmax or gradient masking), "
                "try loss='margin'"
                if zero_grad
                else ""
            ),
        )
        for run in [*runs, *(r for pair in conv_runs.values() for r in pair), full]:
            ok = run.norm_excess <= _BOUND_SLACK and run.box_excess <= _BOUND_SLACK
            add(
                "adversarial images within epsilon and in [0, 1]",
                run.spec,
                ok,
                f"largest excess over epsilon {max(run.norm_excess, 0.0):.2e}, outside [0, 1] "
                f"{max(run.box_excess, 0.0):.2e}",
            )
        add(
            "model in eval mode during attacks",
            "model",
            eval_mode,
            "every module in eval mode" if eval_mode else "a module switched itself to train mode",
        )
        add(
            "BatchNorm statistics and buffers untouched",
            "model",
            buffers_same,
            "buffers identical before and after" if buffers_same else "a buffer changed during the attacks",
        )
        return rows

    # -- report ---------------------------------------------------------------------------

    def _tables(
        self,
        res: ProbeResult,
        runs: list[_Run],
        threats: dict[str, ThreatModel],
        robust: dict[str, Tensor],
        clean_correct: Tensor,
        y: Tensor,
        names: list[str],
        checks: list[list[Any]],
        conv_runs: dict[str, tuple[_Run, _Run]],
    ) -> None:
        for norm, tm in threats.items():
            pool = [r for r in runs if r.norm == norm]
            if not pool:
                continue
            rows = []
            for e in tm.epsilons:
                worst = self._worst(clean_correct, pool, e)
                rows.append(
                    [round(e, 5)]
                    + [round(r.accuracy()[r.epsilons.index(e)], 4) for r in pool]
                    + [round(float(worst.float().mean()), 4)]
                )
            label = "L-inf" if norm == "linf" else "L2"
            res.tables.append(
                Table(
                    f"Accuracy versus {label} epsilon",
                    ["epsilon"] + [r.spec for r in pool] + ["worst case"],
                    rows,
                    caption=f"{len(y)} test images; epsilon in [0, 1] pixel units ({label} norm of the "
                    "change).",
                )
            )
        rows = []
        for k, name in enumerate(names):
            m = y == k
            cnt = int(m.sum())
            row: list[Any] = [name, cnt, round(float(clean_correct[m].float().mean()), 4) if cnt else None]
            row += [round(float(robust[n][m].float().mean()), 4) if cnt else None for n in robust]
            rows.append(row)
        res.tables.append(
            Table(
                "Robust accuracy per class",
                ["class", "images", "clean"]
                + [f"robust {'L-inf' if n == 'linf' else 'L2'} {threats[n].epsilon:.4g}" for n in robust],
                rows,
                caption="Worst case per image over every attack run at the reporting epsilon.",
            )
        )
        res.tables.append(
            Table(
                "Validity checks",
                ["check", "scope", "result", "detail"],
                checks,
                caption="Carlini et al., 'On Evaluating Adversarial Robustness' (2019). A failed check "
                "puts a warning next to the numbers.",
            )
        )

    def _figures(
        self,
        res: ProbeResult,
        runs: list[_Run],
        threats: dict[str, ThreatModel],
        full: _Run,
        y_all: Tensor,
        names: list[str],
        conf_eps: float,
        x: Tensor,
        y: Tensor,
        gallery_idx: Tensor,
        clean_preds: Tensor,
    ) -> None:
        for norm, tm in threats.items():
            pool = [r for r in runs if r.norm == norm]
            if not pool:
                continue
            label = "L-inf" if norm == "linf" else "L2"
            stem = f"accuracy_vs_epsilon_{norm}"
            res.figures[stem] = line_figure(
                list(tm.epsilons),
                {r.spec: r.accuracy() for r in pool},
                title=f"Accuracy under attack ({label})",
                xlabel="epsilon (pixel units)",
                ylabel="accuracy",
            )
            res.captions[stem] = f"Accuracy on {len(y)} test images versus the {label} radius of the attack."
        cm = confusion_counts(y_all, full.preds[0], len(names))
        res.figures["adversarial_confusion"] = matrix_figure(
            cm, names, title=f"FGSM L-inf, epsilon {conf_eps:.4g}", xlabel="predicted under attack"
        )
        res.captions["adversarial_confusion"] = (
            f"Confusion matrix on all {len(y_all)} test images under FGSM (L-inf, epsilon {conf_eps:.4g})."
        )
        gallery_run = next((r for r in runs if r.spec == "pgd_linf"), runs[0])
        if len(gallery_idx) == 0:
            return
        clean = x[gallery_idx]
        for e in gallery_run.epsilons:
            if e == 0.0 or e not in gallery_run.gallery:
                continue
            j = gallery_run.epsilons.index(e)
            adv = gallery_run.gallery[e]
            images, titles = [], []
            for g, idx in enumerate(gallery_idx.tolist()):
                delta = adv[g] - clean[g]
                peak = float(delta.abs().max())
                amp = 0.5 / peak if peak > 0 else 1.0
                images += [clean[g], (delta * amp + 0.5).clamp(0, 1), adv[g]]
                p = int(gallery_run.preds[j][idx])
                titles += [
                    f"{names[int(y[idx])]}: {names[int(clean_preds[idx])]}",
                    f"change x{amp:.0f}",
                    f"{names[p]} ({float(gallery_run.confidence[j][idx]):.2f})",
                ]
            stem = f"gallery_{gallery_run.spec}_eps{eps_key(e)}"
            res.figures[stem] = image_gallery(
                images, titles, ncols=6, suptitle=f"{gallery_run.spec}, epsilon {e:.4g}"
            )
            res.captions[stem] = (
                f"{gallery_run.spec} at epsilon {e:.4g}: clean image (true: predicted), the change amplified "
                "(gray = 0), and the adversarial image with the prediction and its confidence."
            )
