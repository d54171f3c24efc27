"""Threat models: the epsilon sweep per norm and the epsilon robust accuracy is reported at."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stresslab.attacks.base import Norm, check_epsilon
from stresslab.data.base import DatasetInfo

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
    """An epsilon sweep (pixel units) for one norm and the epsilon at which robust accuracy is reported."""

    norm: Norm
    epsilons: tuple[float, ...]
    epsilon: float

    @property
    def label(self) -> str:
        """The norm as people write it: ``L-inf`` or ``L2``."""
        return "L-inf" if self.norm == "linf" else "L2"

    @property
    def robust_key(self) -> str:
        """Metric key of robust accuracy: ``robust_accuracy`` (L-inf), ``robust_accuracy_l2``."""
        return "robust_accuracy" if self.norm == "linf" else f"robust_accuracy_{self.norm}"

    @property
    def epsilon_key(self) -> str:
        """Metric key of the reporting epsilon: ``epsilon`` (L-inf), ``l2_epsilon``."""
        return "epsilon" if self.norm == "linf" else f"{self.norm}_epsilon"


def default_threat_models(info: DatasetInfo) -> dict[Norm, ThreatModel]:
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


def threat_model(default: ThreatModel, values: Sequence[float] | None, epsilon: float | None) -> ThreatModel:
    """A user's sweep ``values`` (``None``: the default's), with 0 and the reporting epsilon added.

    The reporting epsilon is ``epsilon`` if given, else the largest of a user's sweep, else
    the default's. Every value must be a finite number >= 0 (a ConfigError otherwise).
    """
    eps = {check_epsilon(e) for e in (default.epsilons if values is None else values)}
    if epsilon is not None:
        ref = check_epsilon(epsilon)
    elif values is not None and eps:
        ref = max(eps)
    else:
        ref = default.epsilon
    return ThreatModel(default.norm, tuple(sorted(eps | {0.0, ref})), ref)
