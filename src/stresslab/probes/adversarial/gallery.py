"""Galleries of the images each attack flipped: per attack and epsilon, images the model got
right before the attack and wrong after it, with the change amplified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stresslab.metrics.ssim import ssim
from stresslab.probes.adversarial.sweep import AttackRun, SweepResult
from stresslab.probes.adversarial.threats import eps_key
from stresslab.report.figures import image_gallery

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def flipped_count(res: SweepResult, run: AttackRun, epsilon: float) -> int:
    """How many attacked images ``run`` flipped at ``epsilon``: right before, wrong after."""
    j = run.epsilons.index(epsilon)
    return int((res.clean.correct & ~run.correct[j]).sum())


def galleries(res: SweepResult, names: Sequence[str]) -> dict[str, tuple[Figure, str]]:
    """One figure per main run and non-zero epsilon at which it flipped an image, keyed
    ``gallery_<name>_eps<eps>``, each with its caption."""
    out: dict[str, tuple[Figure, str]] = {}
    for run in res.runs:
        for e in run.epsilons:
            if e != 0.0 and e in run.gallery:
                out[f"gallery_{run.name}_eps{eps_key(e)}"] = _gallery(res, run, e, names)
    return out


def _gallery(res: SweepResult, run: AttackRun, e: float, names: Sequence[str]) -> tuple[Figure, str]:
    j = run.epsilons.index(e)
    picked = run.gallery[e]
    sims = ssim(picked.clean, picked.adversarial)
    images, titles = [], []
    for g, idx in enumerate(picked.positions.tolist()):
        clean, adv = picked.clean[g], picked.adversarial[g]
        delta = adv - clean
        peak = float(delta.abs().max())
        amp = 0.5 / peak if peak > 0 else 1.0
        images += [clean, (delta * amp + 0.5).clamp(0, 1), adv]
        true, before, after = int(res.labels[idx]), int(res.clean.preds[idx]), int(run.preds[j][idx])
        titles += [
            f"{names[true]}: {names[before]} ({float(res.clean.confidence[idx]):.2f})",
            f"change x{amp:.0f}, SSIM {float(sims[g]):.2f}",
            f"{names[after]} ({float(run.confidence[j][idx]):.2f})",
        ]
    fig = image_gallery(
        images, titles, ncols=6, suptitle=f"{run.name}, epsilon {e:.4g}: right before, wrong after"
    )
    mean = run.mean_ssim()[j]
    caption = (
        f"{run.name} ({run.attack.title}) at epsilon {e:.4g}: {len(picked.positions)} of the "
        f"{flipped_count(res, run, e)} images it flipped (right on the clean image, wrong after the "
        "attack), the first in the order attacked. Each: the clean image (true: predicted, with "
        "confidence), the change amplified (gray = 0) with the image's SSIM, and the adversarial "
        "image with the prediction and its confidence."
        + ("" if mean is None else f" Mean SSIM over all attacked images at this epsilon: {mean:.3f}.")
    )
    return fig, caption
