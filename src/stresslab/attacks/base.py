"""What every attack shares: the threat model (an L-p ball in [0, 1] pixel units), the loss,
input gradients, projection onto the ball and the [0, 1] box, and the :class:`Attack` base
with its capabilities (the ``ATTACKS`` registry is in :mod:`stresslab.attacks.registry`).

Images are float tensors (N, C, H, W) in [0, 1]; normalization stays inside the model, so an
epsilon of 0.1 means 0.1 of the full pixel range whatever the dataset's mean and std.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

Norm = Literal["linf", "l2"]
LossName = Literal["ce", "margin"]
NORMS: tuple[str, ...] = ("linf", "l2")
LOSSES: tuple[str, ...] = ("ce", "margin")

# Below this L2 norm a gradient counts as zero; dividing by it would amplify rounding noise.
_TINY = 1e-12


@dataclass(frozen=True)
class AttackOutput:
    """Adversarial images (N, C, H, W) in [0, 1] and the model's logits (N, K) on them."""

    images: Tensor
    logits: Tensor


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` as a float if it is finite and >= 0; a :class:`ConfigError` otherwise."""
    e = float(epsilon)
    if not (e >= 0.0 and e < float("inf")):
        raise ConfigError(f"attack epsilon must be a finite number >= 0, got {epsilon!r}")
    return e


def check_norm(norm: str) -> Norm:
    """``norm`` if it is ``"linf"`` or ``"l2"``; a :class:`ConfigError` otherwise."""
    if norm not in NORMS:
        raise ConfigError(f"unknown attack norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm  # type: ignore[return-value]


def _flat_norms(t: Tensor) -> Tensor:
    """Per-image L2 norms (N,) of a batch (N, ...), shaped (N, 1, ..., 1) to broadcast."""
    n = t.flatten(1).norm(p=2, dim=1)
    return n.view(-1, *([1] * (t.dim() - 1)))


def perturbation_norms(delta: Tensor, norm: Norm) -> Tensor:
    """Per-image size (N,) of perturbations ``delta`` (N, C, H, W) in the given norm."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(len(flat))
    return flat.norm(p=2, dim=1)


def steepest_ascent(grad: Tensor, norm: Norm) -> Tensor:
    """Unit step direction for gradient ``grad`` (N, C, H, W) under ``norm``.

    L-inf: ``sign(grad)`` (Goodfellow et al., 2015); L2: ``grad / ||grad||_2`` per image.
    A zero gradient gives a zero direction (no step), never NaN.
    """
    if norm == "linf":
        return grad.sign()
    return grad / _flat_norms(grad).clamp_min(_TINY)


def project(delta: Tensor, epsilon: float, norm: Norm) -> Tensor:
    """Project perturbations ``delta`` (N, C, H, W) onto the ``norm`` ball of radius ``epsilon``."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scale = (epsilon / _flat_norms(delta).clamp_min(_TINY)).clamp(max=1.0)
    return delta * scale


def clamp_to_box(x: Tensor, delta: Tensor) -> Tensor:
    """``delta`` changed so that ``x + delta`` lies in [0, 1].

    Clamping after projection keeps the perturbation inside the ball: for both L-inf and
    L2 it only shrinks components towards zero.
    """
    return (x + delta).clamp_(0.0, 1.0) - x


def random_start(x: Tensor, epsilon: float, norm: Norm, generator: torch.Generator | None) -> Tensor:
    """A random perturbation drawn uniformly from the ``norm`` ball of radius ``epsilon``.

    Drawn on the generator's device (a CPU generator gives the same draw on any device),
    then moved to ``x.device`` and clamped so that ``x + delta`` is in [0, 1]. L2 uses a
    Gaussian direction and radius ``epsilon * U^(1/d)``, uniform in the ball's volume.
    """
    shape = x.shape
    dev = generator.device if generator is not None else x.device
    if norm == "linf":
        delta = (torch.rand(shape, generator=generator, device=dev) * 2.0 - 1.0) * epsilon
    else:
        direction = torch.randn(shape, generator=generator, device=dev)
        direction = direction / _flat_norms(direction).clamp_min(_TINY)
        d = max(1, x[0].numel()) if len(x) else 1
        radius = torch.rand((shape[0],), generator=generator, device=dev).pow(1.0 / d) * epsilon
        delta = direction * radius.view(-1, *([1] * (len(shape) - 1)))
    return clamp_to_box(x, delta.to(device=x.device, dtype=x.dtype))


def attack_loss(logits: Tensor, y: Tensor, loss: LossName) -> Tensor:
    """Per-image loss (N,) the attack maximizes.

    ``"ce"``: cross-entropy. ``"margin"``: ``max_{j != y} z_j - z_y`` on the logits
    (Carlini and Wagner, 2017), which keeps a useful gradient when the softmax saturates.
    """
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return others.amax(dim=1) - true


def input_gradient(model: nn.Module, x: Tensor, y: Tensor, loss: LossName = "ce") -> tuple[Tensor, Tensor]:
    """Gradient (N, C, H, W) of the summed per-image loss with respect to images ``x``.

    Returns ``(grad, logits)``; ``logits`` (N, K) are detached. Summing (not averaging)
    keeps each image's gradient independent of the batch size. The parameters are frozen
    meanwhile (no parameter ``.grad`` is touched) and the model's mode is left alone.
    """
    with inference_scope(model, eval_mode=False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = model(xg)
        (grad,) = torch.autograd.grad(attack_loss(logits, y, loss).sum(), xg)
    return grad.detach(), logits.detach()


class Attack(ABC):
    """An untargeted evasion attack in an L-p ball of radius ``epsilon`` around each image.

    Settings are keyword-only arguments of ``__init__``, each kept as the attribute of the
    same name (:meth:`settings` reads them back); data go to :meth:`run`. An attack runs the
    model in whatever mode it is in (the probes put it in eval mode with
    :func:`stresslab.scoped.inference_scope`), takes gradients with respect to the input only
    and never touches parameter gradients.

    Capabilities are class attributes that evaluations read instead of attack names:
    ``norms`` (registered as ``"<name>_<norm>"`` for each), ``iterative`` (many gradient
    steps, so an evaluation checks convergence by doubling each integer setting named in
    ``convergence_settings``) and ``shares_gradient`` (:meth:`sweep` takes one input
    gradient for all epsilons, so a sweep costs one backward pass per batch) and
    ``uses_gradients`` (``False`` for a score-based attack that only reads the logits: it
    still works where input gradients are zero or useless, and evaluations compare it with
    the gradient attacks to detect gradient masking).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    iterative: ClassVar[bool] = False
    convergence_settings: ClassVar[tuple[str, ...]] = ()
    shares_gradient: ClassVar[bool] = False
    uses_gradients: ClassVar[bool] = True

    def __init__(self, *, norm: str = "linf", loss: str = "ce") -> None:
        self.norm: Norm = check_norm(norm)
        if self.norm not in self.norms:
            raise ConfigError(f"attack {self.name}: norm {norm!r} not supported; choose one of {self.norms}")
        if loss not in LOSSES:
            raise ConfigError(f"unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}")
        self.loss: LossName = loss  # type: ignore[assignment]

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The keyword settings of ``__init__`` other than ``norm`` (which the registry binds)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "norm")

    def settings(self) -> dict[str, Any]:
        """This attack's settings by name (``norm`` left out): ``type(self)(norm=..., **s)`` rebuilds it."""
        return {k: getattr(self, k) for k in self.setting_names()}

    @abstractmethod
    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Attack images ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,) at radius ``epsilon``.

        The returned images satisfy ``||x_adv - x||_p <= epsilon`` and lie in [0, 1].
        """

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Adversarial images (N, C, H, W) in [0, 1], within ``epsilon`` of ``x``; see :meth:`run`."""
        return self.run(model, x, y, epsilon, generator=generator).images

    def sweep(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilons: Sequence[float],
        *,
        generator: torch.Generator | None = None,
    ) -> list[AttackOutput]:
        """One :class:`AttackOutput` per epsilon; attacks that can share work override this."""
        return [self.run(model, x, y, float(e), generator=generator) for e in epsilons]
