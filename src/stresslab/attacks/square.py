"""Square Attack: score-based random search, no gradients (Andriushchenko et al., 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from stresslab.attacks.base import (
    Attack,
    AttackOutput,
    attack_loss,
    check_epsilon,
    clamp_to_box,
    project,
)
from stresslab.attacks.registry import register_attack
from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

# The paper's schedule: p halves at these iterations of a 10,000-query budget (rescaled to
# ``n_queries``), from p_init down to p_init / 512.
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# Redraws of a square's signs when they would leave the image unchanged (the paper redraws
# until they change it; a bound keeps a pixel stuck at a box edge from looping forever).
_REDRAWS = 10
_TINY = 1e-12


def p_schedule(p_init: float, iteration: int, n_queries: int) -> float:
    """Fraction ``p`` of the image a square covers at ``iteration`` of ``n_queries``: ``p_init``,
    halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations, the
    budget rescaled to ``n_queries`` (Andriushchenko et al., 2020, Sec. 3)."""
    it = int(iteration / n_queries * 10000)
    return p_init / 2 ** sum(it > t for t in _SCHEDULE)


def _signs(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """Random +-1 of ``shape`` drawn on the CPU generator, on ``like``'s device and dtype."""
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(like.device, like.dtype)


def _randint(high: int, gen: torch.Generator) -> int:
    """A uniform integer in ``[0, high]``."""
    return int(torch.randint(0, high + 1, (1,), generator=gen))


def _rectangle(a: int, b: int) -> Tensor:
    """An (a, b) block of nested rectangles weighted ``1 / (k + 1)^2``, unit L2 norm."""
    out = torch.zeros(a, b)
    r, c = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        out[max(r, 0) : min(r + 2 * k + 1, a), max(c, 0) : min(c + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        r, c = r - 1, c - 1
    return out / out.norm().clamp_min(_TINY)


def _eta(s: int, gen: torch.Generator) -> Tensor:
    """The L2 attack's (s, s) update: a positive and a negative block of nested rectangles
    (the paper's "meta pseudo-Gaussian" perturbation), unit norm, transposed at random."""
    out = torch.cat([_rectangle(s // 2, s), -_rectangle(s - s // 2, s)])
    out = out / out.norm().clamp_min(_TINY)
    return out.T if bool(torch.rand(1, generator=gen) > 0.5) else out


def _l2_norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


@register_attack("square")
class Square(Attack):
    """Square Attack, "Square Attack: a query-efficient black-box adversarial attack via random
    search" (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020), L-inf and L2.

    It only reads the model's logits, so gradient masking (a model that rounds its input,
    saturates or is not differentiable) does not stop it. From a start on the boundary of
    the ball (L-inf: vertical stripes of +-epsilon; L2: a grid of the paper's pseudo-Gaussian
    blocks), each query changes one random square window of side
    ``round(sqrt(p * H * W))`` (``p`` from :func:`p_schedule`; L-inf: every pixel of the
    window to ``+-epsilon`` per channel; L2: mass moved into the window from a second one,
    the whole perturbation rescaled to norm epsilon) and keeps the change when the loss
    rises (``loss``: ``"margin"``, the paper's, or ``"ce"``) or the image is misclassified.
    An image stops at its first misclassified query. ``n_queries`` is the budget per image
    and restart (the start counts as one); ``restarts`` reruns the search on images no
    earlier run fooled; ``p_init`` is 0.8 as in AutoAttack (Croce and Hein, 2020). The random
    draws come from ``generator`` (a CPU generator seeded 0 when ``None``), the same on any
    device. Per image the result is the first run that fooled the model, else the one with
    the highest loss.
    """

    title = "Square"
    iterative = True
    convergence_settings = ("n_queries",)
    uses_gradients = False

    def __init__(
        self,
        *,
        norm: str = "linf",
        loss: str = "margin",
        n_queries: int = 1000,
        p_init: float = 0.8,
        restarts: int = 1,
    ) -> None:
        super().__init__(norm=norm, loss=loss)
        if n_queries < 1:
            raise ConfigError(f"square n_queries must be >= 1, got {n_queries}")
        if not 0.0 < p_init <= 1.0:
            raise ConfigError(f"square p_init must be in (0, 1], got {p_init}")
        if restarts < 1:
            raise ConfigError(f"square restarts must be >= 1, got {restarts}")
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.restarts = int(restarts)

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Adversarial images (N, C, H, W) in [0, 1] within ``epsilon`` of ``x``, and their
        logits (N, K), after at most ``n_queries * restarts`` forward passes per image."""
        eps = check_epsilon(epsilon)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        x = x.detach()
        with torch.no_grad(), inference_scope(model, eval_mode=False):
            logits = model(x).detach()
            if eps == 0.0 or len(x) == 0:
                return AttackOutput(images=x.clone(), logits=logits)
            best, best_logits = x.clone(), logits
            best_loss = attack_loss(logits, y, self.loss)
            fooled = logits.argmax(dim=1) != y
            for _ in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                adv, out, loss = self._search(model, x[todo], y[todo], eps, gen)
                hit = out.argmax(dim=1) != y[todo]
                better = hit | (loss > best_loss[todo])
                idx = todo[better]
                best[idx], best_logits[idx], best_loss[idx] = adv[better], out[better], loss[better]
                fooled[todo[hit]] = True
        return AttackOutput(images=best, logits=best_logits)

    def _search(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, gen: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One random search from a fresh start: ``(images, logits, loss)`` per image."""
        n, c, h, w = x.shape
        if self.norm == "linf":
            delta = eps * _signs((n, c, 1, w), gen, x).expand(n, c, h, w)
        else:
            delta = eps * self._l2_start(x, gen)
        best = x + clamp_to_box(x, project(delta, eps, self.norm))
        logits = model(best).detach()
        loss = attack_loss(logits, y, self.loss)
        fooled = logits.argmax(dim=1) != y
        for i in range(1, self.n_queries):
            todo = (~fooled).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            p = p_schedule(self.p_init, i, self.n_queries)
            step = self._linf_step if self.norm == "linf" else self._l2_step
            cand = step(x[todo], best[todo], eps, p, gen)
            out = model(cand).detach()
            new = attack_loss(out, y[todo], self.loss)
            hit = out.argmax(dim=1) != y[todo]
            better = hit | (new > loss[todo])
            idx = todo[better]
            best[idx], logits[idx], loss[idx] = cand[better], out[better], new[better]
            fooled[todo[hit]] = True
        return best, logits, loss

    def _linf_step(self, x: Tensor, best: Tensor, eps: float, p: float, gen: torch.Generator) -> Tensor:
        """Candidates: the best images with one random window set to ``x +- eps`` per channel."""
        n, c, h, w = x.shape
        s = min(max(round(math.sqrt(p * h * w)), 1), max(min(h, w) - 1, 1))
        vh, vw = _randint(h - s, gen), _randint(w - s, gen)
        win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        x_win, best_win = x[win], best[win]
        new_win = (x_win + eps * _signs((n, c, 1, 1), gen, x)).clamp(0.0, 1.0)
        for _ in range(_REDRAWS):
            same = ((new_win - best_win).abs().flatten(1).amax(dim=1) < 1e-7).nonzero().squeeze(1)
            if len(same) == 0:
                break
            new_win[same] = (x_win[same] + eps * _signs((len(same), c, 1, 1), gen, x)).clamp(0.0, 1.0)
        cand = best.clone()
        cand[win] = new_win
        return cand

    def _l2_start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """The L2 start: a grid of (H // 5)-sided pseudo-Gaussian blocks of random sign per
        channel, centred in the image, scaled to unit L2 norm."""
        n, c, h, w = x.shape
        s = max(h // 5, 1)
        start = max((h - 5 * s) // 2, 0)
        delta = torch.zeros_like(x)
        for vh in range(start, h - s + 1, s):
            for vw in range(start, w - s + 1, s):
                block = _eta(s, gen).to(x.device, x.dtype).view(1, 1, s, s)
                delta[:, :, vh : vh + s, vw : vw + s] += block * _signs((n, c, 1, 1), gen, x)
        return delta / _l2_norms(delta).clamp_min(_TINY)

    def _l2_step(self, x: Tensor, best: Tensor, eps: float, p: float, gen: torch.Generator) -> Tensor:
        """Candidates: mass of the perturbation moved from a second random window into a first
        one, which gets a new pseudo-Gaussian block; the result rescaled to norm ``eps``."""
        n, c, h, w = x.shape
        side = min(h, w) if min(h, w) % 2 else min(h, w) - 1
        s = max(round(math.sqrt(p * h * w)), 3)
        s = min(s + 1 if s % 2 == 0 else s, max(side, 1))
        vh, vw = _randint(h - s, gen), _randint(w - s, gen)
        vh2, vw2 = _randint(h - s, gen), _randint(w - s, gen)
        win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        win2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        delta = best - x
        mask = torch.zeros_like(x)
        mask[win], mask[win2] = 1.0, 1.0
        norm_image, norm_windows = _l2_norms(delta), _l2_norms(delta * mask)
        old = delta[win] / (delta[win].flatten(2).norm(dim=2).view(n, c, 1, 1) + _TINY)
        block = _eta(s, gen).to(x.device, x.dtype).view(1, 1, s, s)
        new = block * _signs((n, c, 1, 1), gen, x) + old
        room = ((eps**2 - norm_image**2).clamp_min(0.0) / c + norm_windows**2).sqrt()
        new = new / (new.flatten(2).norm(dim=2).view(n, c, 1, 1) + _TINY) * room
        delta = delta.clone()
        delta[win2] = 0.0
        delta[win] = new
        delta = delta / (_l2_norms(delta) + _TINY) * eps
        return x + clamp_to_box(x, project(delta, eps, "l2"))
