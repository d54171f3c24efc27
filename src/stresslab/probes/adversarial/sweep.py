"""Running attacks over epsilon sweeps in batches; the typed record of what they found."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from stresslab.attacks import Attack, perturbation_norms
from stresslab.attacks.base import Norm, input_gradient
from stresslab.data.base import to_float
from stresslab.data.cache import release_pages
from stresslab.metrics.ssim import ssim
from stresslab.probes.adversarial.threats import ThreatModel
from stresslab.shards import keyed_generator


def mean_or_none(values: Tensor) -> float | None:
    """Mean of ``values`` (any shape) as a float; ``None`` when there are none (undefined)."""
    return float(values.float().mean()) if values.numel() else None


@dataclass
class Flipped:
    """Images an attack flipped at one epsilon (right on the clean image, wrong after the
    attack), the first ``g`` in the order attacked: positions (g,) among the attacked images,
    clean and adversarial images (g, C, H, W) float in [0, 1]."""

    positions: Tensor
    clean: Tensor
    adversarial: Tensor


@dataclass
class AttackRun:
    """What one attack found on the images it attacked, per epsilon of its sweep.

    ``variant`` is empty for a main sweep, else says how the run differs (``"2x steps"``,
    ``"whole test set"``); ``doubled`` names the setting a convergence run doubled. ``ssim``
    holds, per epsilon, each image's structural similarity (Wang et al., 2004) to its clean
    image, (n,) in [-1, 1] (empty when not measured); ``gallery`` the images it flipped.
    """

    name: str
    attack: Attack
    epsilons: tuple[float, ...]
    variant: str = ""
    doubled: str = ""
    correct: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) bool
    preds: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) int64
    confidence: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) float, in [0, 1]
    norm_excess: float = 0.0  # largest ||delta||_p - epsilon seen (pixel units)
    box_excess: float = 0.0  # largest distance outside [0, 1] seen
    ssim: list[Tensor] = field(default_factory=list)  # per epsilon: (n,) float
    gallery: dict[float, Flipped] = field(default_factory=dict)  # epsilon -> flipped images

    @property
    def label(self) -> str:
        """The name, with the variant in parentheses: ``pgd_linf (2x steps)``."""
        return f"{self.name} ({self.variant})" if self.variant else self.name

    @property
    def norm(self) -> Norm:
        return self.attack.norm

    def accuracy(self) -> list[float | None]:
        """Accuracy per epsilon, in [0, 1]; ``None`` where no image was attacked."""
        return [mean_or_none(c) for c in self.correct]

    def accuracy_at(self, epsilon: float) -> float | None:
        """Accuracy at ``epsilon`` (which must be in the sweep)."""
        return mean_or_none(self.correct[self.epsilons.index(epsilon)])

    def mean_ssim(self) -> list[float | None]:
        """Mean SSIM to the clean images per epsilon; ``None`` where none was measured."""
        return [mean_or_none(v) for v in self.ssim] if self.ssim else [None] * len(self.epsilons)


@dataclass
class CleanPass:
    """The attacked images before attack: correctness (n,) bool, predictions (n,) int64, the
    predicted class's probability (n,) in [0, 1], and how many have an all-zero input gradient."""

    correct: Tensor
    preds: Tensor
    confidence: Tensor
    zero_gradients: int


@dataclass
class SweepResult:
    """Everything the attacks found, for the checks and the presentation to read."""

    threats: dict[Norm, ThreatModel]
    labels: Tensor  # (n,) labels of the attacked images
    clean: CleanPass
    runs: list[AttackRun]  # main sweeps, in the order configured, then those added automatically
    convergence: list[AttackRun]  # runs with a setting doubled, at the reporting epsilon
    whole: AttackRun  # the confusion attack on every test image
    whole_labels: Tensor  # (N,) labels of the whole test set
    eval_mode: bool  # every module in eval mode after the attacks
    buffers_unchanged: bool  # every buffer as before the attacks
    added: dict[str, str] = field(default_factory=dict)  # attack added automatically -> why

    def norms(self) -> list[Norm]:
        """The norms some main sweep attacked, in threat-model order."""
        used = {r.norm for r in self.runs}
        return [n for n in self.threats if n in used]

    def pool(self, norm: Norm) -> list[AttackRun]:
        """Main and convergence runs of ``norm``: what robust accuracy takes the worst of."""
        return [r for r in (*self.runs, *self.convergence) if r.norm == norm]

    def robust(self, norm: Norm) -> Tensor:
        """Per attacked image (n,): right on the clean image and under every run at the epsilon."""
        return worst_case(self.clean.correct, self.pool(norm), self.threats[norm].epsilon)

    def by_attack(self, norm: Norm) -> dict[str, float | None]:
        """Accuracy at the reporting epsilon of each run of ``norm`` (main and convergence), by label."""
        e = self.threats[norm].epsilon
        return {r.label: r.accuracy_at(e) for r in self.pool(norm) if e in r.epsilons}

    def set_by(self, norm: Norm) -> str | None:
        """The run of ``norm`` with the lowest accuracy at the reporting epsilon (the first of
        equals, in run order): the attack that sets robust accuracy; ``None`` if undefined."""
        defined = {k: v for k, v in self.by_attack(norm).items() if v is not None}
        return min(defined, key=lambda k: defined[k]) if defined else None


def worst_case(clean_correct: Tensor, pool: Sequence[AttackRun], epsilon: float) -> Tensor:
    """Per image (n,) bool: right on the clean image and under every run of ``pool`` at ``epsilon``."""
    ok = clean_correct.clone()
    for run in pool:
        if epsilon in run.epsilons:
            ok &= run.correct[run.epsilons.index(epsilon)]
    return ok


def sweep_units(attack: Attack, n_epsilons: int) -> int:
    """Progress units per batch: one for an attack sharing one gradient, else one per epsilon."""
    return 1 if attack.shares_gradient else n_epsilons


@dataclass
class Sweeper:
    """Runs attacks in batches of ``batch_size`` on ``device``, advancing a progress bar."""

    model: nn.Module
    device: torch.device
    batch_size: int
    advance: Callable[[int], None]

    def clean(self, x: Tensor, y: Tensor) -> CleanPass:
        """Clean correctness and predictions of images ``x`` (uint8 or float), and zero gradients."""
        correct, preds, conf, zero = [], [], [], 0
        for i in range(0, len(y), self.batch_size):
            xb = to_float(x[i : i + self.batch_size]).to(self.device)
            yb = y[i : i + self.batch_size].to(self.device)
            grad, logits = input_gradient(self.model, xb, yb)
            zero += int((grad.flatten(1).abs().amax(dim=1) == 0).sum())
            c, p = logits.float().softmax(dim=1).max(dim=1)
            preds.append(p.cpu())
            conf.append(c.cpu())
            correct.append((p == yb).cpu())
            self.advance(1)
        return CleanPass(torch.cat(correct), torch.cat(preds), torch.cat(conf), zero)

    def sweep(
        self,
        run: AttackRun,
        x: Tensor,
        y: Tensor,
        key: tuple[int | str, ...] | None = None,
        *,
        index: Tensor | None = None,
        clean_correct: Tensor | None = None,
        gallery: int = 0,
        measure_ssim: bool = True,
    ) -> AttackRun:
        """Fill ``run`` by attacking images ``x`` (uint8 or float) with labels ``y`` at each epsilon.

        An attack that ``shares_gradient`` sweeps all epsilons at once per batch; any other
        runs once per epsilon, in order. Random starts come from one generator per batch,
        keyed by ``key`` and the official test index (``index`` (n,), default positions) of
        the batch's first image, so a batch draws the same wherever it runs; ``key`` None:
        no generator. With ``clean_correct`` (n,) bool, the first ``gallery`` images flipped
        at each epsilon (right before, wrong after) are kept; ``measure_ssim`` measures each
        image's SSIM.
        """
        eps = run.epsilons
        correct: list[list[Tensor]] = [[] for _ in eps]
        preds: list[list[Tensor]] = [[] for _ in eps]
        conf: list[list[Tensor]] = [[] for _ in eps]
        sims: list[list[Tensor]] = [[] for _ in eps]
        kept: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in eps]
        found = [0] * len(eps)
        bs = self.batch_size
        for i in range(0, len(y), bs):
            xb, yb = to_float(x[i : i + bs]).to(self.device), y[i : i + bs].to(self.device)
            first = int(index[i]) if index is not None else i
            generator = None if key is None else keyed_generator(*key, first)
            if run.attack.shares_gradient:
                outs = run.attack.sweep(self.model, xb, yb, eps, generator=generator)
                self.advance(1)
            else:
                outs = []
                for e in eps:
                    outs.append(run.attack.run(self.model, xb, yb, e, generator=generator))
                    self.advance(1)
            for j, (e, out) in enumerate(zip(eps, outs, strict=True)):
                excess = perturbation_norms(out.images - xb, run.norm) - e
                run.norm_excess = max(run.norm_excess, float(excess.max()))
                outside = torch.maximum(-out.images, out.images - 1)
                run.box_excess = max(run.box_excess, float(outside.max()))
                c, p = out.logits.float().softmax(dim=1).max(dim=1)
                preds[j].append(p.cpu())
                correct[j].append((p == yb).cpu())
                conf[j].append(c.cpu())
                if measure_ssim:
                    sims[j].append(ssim(xb, out.images).cpu())
                if clean_correct is not None and found[j] < gallery:
                    right = clean_correct[i : i + bs].to(self.device)
                    flip = (right & (p != yb)).nonzero().squeeze(1)[: gallery - found[j]]
                    if len(flip):
                        kept[j].append((flip.cpu() + i, xb[flip].cpu(), out.images[flip].cpu()))
                        found[j] += len(flip)
            release_pages()  # a cached test set's pages read so far leave the resident set
        run.correct = [torch.cat(c) for c in correct]
        run.preds = [torch.cat(p) for p in preds]
        run.confidence = [torch.cat(c) for c in conf]
        run.ssim = [torch.cat(v) for v in sims] if measure_ssim else []
        run.gallery = {
            e: Flipped(*(torch.cat(parts) for parts in zip(*k, strict=True)))
            for e, k in zip(eps, kept, strict=True)
            if k
        }
        return run
