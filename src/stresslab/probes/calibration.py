"""The ``calibration`` probe: how far confidence is from accuracy, before and after
temperature scaling fitted on the validation split."""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor

from stresslab.metrics.calibration import (
    DEFAULT_BINS,
    ReliabilityBins,
    calibration_summary,
    fit_temperature,
    reliability_bins,
)
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.probes.calibration_selective import selective_section

# Metrics shown before and after temperature scaling, with their labels in the table.
_COMPARED = {
    "ece": "ECE (15 equal-width bins)",
    "aece": "adaptive ECE (equal-mass bins)",
    "mce": "MCE",
    "classwise_ece": "class-wise ECE",
    "nll": "NLL (nats)",
    "brier": "Brier score",
    "accuracy": "accuracy",
    "mean_confidence": "mean confidence",
    "mean_confidence_correct": "mean confidence, right predictions",
    "mean_confidence_wrong": "mean confidence, wrong predictions",
}


def reliability_figure(bins: ReliabilityBins, title: str = "") -> Figure:
    """Reliability diagram (accuracy per confidence bin against the diagonal, gaps shaded)
    above the histogram of confidences, as in Guo et al. (2017), Figure 1."""
    # A bare Figure (no pyplot) keeps no global state, so nothing needs closing.
    fig = Figure(figsize=(4.6, 5.4))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    lower = bins.lower.numpy()
    width = (bins.upper - bins.lower).numpy()
    filled = bins.count.numpy() > 0
    acc, conf = bins.accuracy.numpy(), bins.confidence.numpy()
    top.bar(
        lower[filled],
        acc[filled],
        width=width[filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    top.bar(
        lower[filled],
        (conf - acc)[filled],
        bottom=acc[filled],
        width=width[filled],
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.5,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize=7, loc="upper left")
    if title:
        top.set_title(title, fontsize=9)
    total = float(bins.count.sum())
    share = bins.count.numpy() / total if total > 0 else bins.count.numpy()
    bottom.bar(lower, share, width=width, align="edge", color="gray", edgecolor="black", linewidth=0.5)
    if total > 0:
        mean_conf = float((bins.count * bins.confidence).sum()) / total
        mean_acc = float((bins.count * bins.accuracy).sum()) / total
        bottom.axvline(mean_acc, color="tab:blue", linestyle="--", linewidth=1, label="accuracy")
        bottom.axvline(mean_conf, color="tab:red", linestyle="--", linewidth=1, label="mean confidence")
        bottom.legend(fontsize=6, loc="upper left")
    bottom.set_xlabel("confidence (max softmax probability)")
    bottom.set_ylabel("share")
    fig.tight_layout()
    return fig


def _bins_table(bins: ReliabilityBins, title: str) -> Table:
    rows = []
    for i in range(len(bins.count)):
        n = int(bins.count[i])
        close = "]" if i == len(bins.count) - 1 else ")"
        rows.append(
            [
                f"[{float(bins.lower[i]):.3f}, {float(bins.upper[i]):.3f}{close}",
                n,
                round(float(bins.confidence[i]), 4) if n else None,
                round(float(bins.accuracy[i]), 4) if n else None,
                round(float(bins.gap[i]), 4) if n else None,
            ]
        )
    return Table(
        title,
        ["confidence bin", "count", "mean confidence", "accuracy", "|gap|"],
        rows,
        caption="Empty bins have no weight in ECE and MCE.",
    )


@register_probe("calibration")
class CalibrationProbe(Probe):
    """ECE (equal-width bins), adaptive ECE (equal-mass bins), MCE, class-wise ECE, NLL and
    Brier score on the test split, with reliability diagrams; the mean confidence of wrong
    and right predictions; temperature scaling (Guo et al., ICML 2017) fitted on the
    validation split by L-BFGS on the NLL, with the same metrics after scaling; and
    selective prediction (``calibration_selective``): the risk-coverage curve, AURC and
    accuracy at 90%, 80% and 50% coverage, before and after scaling.

    ``n_bins``: number of confidence bins (15, as Guo et al.). ``max_temperature`` bounds
    the fitted temperature to ``[1 / max_temperature, max_temperature]``.
    """

    order = 40
    headlines = (Headline("ece", "ECE ({n_bins} bins)"),)

    def __init__(self, *, n_bins: int = DEFAULT_BINS, max_temperature: float = 20.0) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        if not max_temperature > 1.0:
            raise ValueError(f"max_temperature must be > 1, got {max_temperature}")
        self.n_bins = int(n_bins)
        self.max_temperature = float(max_temperature)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        logits, labels = ctx.predictions.logits, ctx.predictions.labels
        n = len(labels)
        before = calibration_summary(logits, labels, self.n_bins)
        if n == 0:
            res.warnings.append("the test set is empty: every calibration metric is reported as 0")
        elif n < 10 * self.n_bins:
            res.warnings.append(
                f"only {n} test images for {self.n_bins} bins: ECE, MCE and the reliability diagram are "
                "noisy (most bins hold a handful of images)"
            )
        if n > 0 and before["accuracy"] == 1.0:
            res.warnings.append(
                "every test prediction is right: the wrong-prediction confidence is reported as 0"
            )

        temperature, fitted = self._temperature(ctx, res)
        scaled = logits / temperature
        after = calibration_summary(scaled, labels, self.n_bins)

        for key, value in before.items():
            res.metrics[key] = value
        res.metrics["temperature"] = temperature
        for key, value in after.items():
            if key != "accuracy":
                res.metrics[f"{key}_after_temperature"] = value

        if fitted and after["ece"] > before["ece"]:
            res.warnings.append(
                f"temperature scaling (T = {temperature:.3f}, fitted on the validation split) makes test ECE "
                f"worse: {before['ece']:.4f} -> {after['ece']:.4f}; validation and test may differ in "
                "distribution, or the validation split is too small"
            )

        res.tables.append(
            Table(
                "Calibration before and after temperature scaling",
                ["metric", "test", f"test, T = {temperature:.3f}"],
                [[label, round(before[k], 5), round(after[k], 5)] for k, label in _COMPARED.items()],
                caption="Temperature scaling divides the logits by one scalar T; it never changes the "
                "predicted class, so accuracy is the same on both sides.",
            )
        )
        bins_before = reliability_bins(logits.softmax(dim=1) if n else logits, labels, self.n_bins)
        bins_after = reliability_bins(scaled.softmax(dim=1) if n else scaled, labels, self.n_bins)
        res.tables.append(_bins_table(bins_before, "Reliability bins (test)"))
        res.figures["reliability"] = reliability_figure(bins_before, f"test: ECE {before['ece']:.4f}")
        res.captions["reliability"] = (
            "Accuracy per confidence bin against the diagonal (perfect calibration); shaded bars are the "
            "gap to the bin's mean confidence. Below: share of test images per bin."
        )
        if fitted:
            res.tables.append(_bins_table(bins_after, f"Reliability bins (test, T = {temperature:.3f})"))
            res.figures["reliability_temperature"] = reliability_figure(
                bins_after, f"test, T = {temperature:.3f}: ECE {after['ece']:.4f}"
            )
            res.captions["reliability_temperature"] = (
                f"The same after temperature scaling with T = {temperature:.3f}, fitted on the validation "
                "split."
            )

        res.summary.append(
            f"ECE {before['ece']:.4f} (adaptive {before['aece']:.4f}, MCE {before['mce']:.4f}), "
            f"NLL {before['nll']:.4f}, Brier {before['brier']:.4f} on {n} test images."
        )
        res.summary.append(
            f"Mean confidence {before['mean_confidence_wrong']:.3f} on wrong predictions versus "
            f"{before['mean_confidence_correct']:.3f} on right ones."
        )
        if fitted:
            direction = "over" if temperature > 1.0 else "under"
            res.summary.append(
                f"Temperature scaling: T = {temperature:.3f} (the model is {direction}confident), "
                f"ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
                f"NLL {before['nll']:.4f} -> {after['nll']:.4f}."
            )
        res.data = {
            "settings": {"n_bins": self.n_bins, "max_temperature": self.max_temperature},
            "n_bins": self.n_bins,
            "n_test": n,
            "n_val": len(ctx.val_predictions.labels),
            "temperature_fitted": fitted,
            "bins": _bins_data(bins_before),
            "bins_after_temperature": _bins_data(bins_after),
        }
        selective_section(res, logits, scaled, labels, temperature, fitted)
        return res

    def _temperature(self, ctx: ProbeContext, res: ProbeResult) -> tuple[float, bool]:
        """Fitted temperature and whether it was fitted; warnings go to ``res``."""
        val = ctx.val_predictions
        if len(val.labels) == 0:
            res.warnings.append(
                "no validation split (val_fraction is 0, or no training images): temperature scaling was "
                "skipped; the 'after temperature' metrics equal the raw ones (T = 1)"
            )
            return 1.0, False
        bounds = (1.0 / self.max_temperature, self.max_temperature)
        t = fit_temperature(val.logits, val.labels, bounds=bounds)
        if t <= bounds[0] * 1.0001 or t >= bounds[1] * 0.9999:
            res.warnings.append(
                f"the fitted temperature hit its bound ({t:.3f}): the validation NLL keeps falling past it "
                "(near 0 when every validation prediction is right, large when the logits carry no signal), "
                "so the scaled metrics are not meaningful"
            )
        if len(val.labels) < 100:
            res.warnings.append(f"temperature fitted on only {len(val.labels)} validation images")
        return t, True


def _bins_data(bins: ReliabilityBins) -> dict[str, list[float]]:
    def as_list(t: Tensor) -> list[float]:
        return [float(v) for v in t]

    return {
        "lower": as_list(bins.lower),
        "upper": as_list(bins.upper),
        "count": as_list(bins.count),
        "confidence": as_list(bins.confidence),
        "accuracy": as_list(bins.accuracy),
    }
