"""Explanation throughput: stresslab's batched occlusion and Grad-CAM vs the peer libraries.

Occlusion maps per second: stresslab's ``Occlusion`` (all (image, position) pairs in large
batches) vs Captum's ``Occlusion`` (``perturbations_per_eval`` = every window position of
an image) vs a naive loop of one forward pass per patch, on the same model and images,
with the maps checked equal (max abs difference). Grad-CAM maps per second: stresslab's
``GradCam`` vs pytorch-grad-cam's ``GradCAM`` (and Captum's ``LayerGradCam``) on the same
model, layer and batch, with the Pearson correlation of the upsampled maps (both bilinear
with half-pixel centers; Pearson ignores pytorch-grad-cam's min-max scaling).

ROAD (noisy linear imputation, most relevant first), localisation (relevance mass and rank
accuracy on the object) and max-sensitivity (uniform noise): stresslab vs Quantus 0.6.0 on the
same model, images, saliency maps and noise draws, images per second and the largest
difference of their numbers. Max-sensitivity is run twice on the Quantus side: with our
saliency as its ``explain_func`` (the same explainer on both sides) and as a Quantus user calls
it, ``explain_func=quantus.explain`` with Captum's ``Saliency``. For ROAD and max-sensitivity
the model work both sides must do (the forward passes on the imputed images; explaining the
noisy images) is timed apart from the rest, which bounds the ratio.

Model: the repo's ``custom_cnn`` (the default model) on 1x28x28 Fashion-MNIST test images
(random images when the Debian files are absent). Medians over repeats, measured
alternately in one process.

    pip install grad-cam          # pytorch-grad-cam, for this benchmark only
    .venv/bin/python benchmarks/bench_explain.py            # 2-core CPU: about 1 minute when idle
    .venv/bin/python benchmarks/bench_explain.py --quick
    pip install quantus==0.6.0    # for the ROAD, localisation and max-sensitivity rows
    .venv/bin/python benchmarks/bench_explain.py --device cuda --occ-images 64 --cam-images 1024
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.attributions import GradCam, Occlusion, Saliency
from stresslab.attributions.occlusion import window_starts
from stresslab.data.base import DatasetInfo
from stresslab.metrics.localisation import relevance_mass_accuracy, relevance_rank_accuracy
from stresslab.models import build_model, default_cam_layer, get_layer
from stresslab.probes.explain.road import road_curves
from stresslab.probes.explain.sensitivity import max_sensitivity, uniform_noise

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def load_images(n: int, seed: int) -> tuple[Tensor, str]:
    """(n, 1, 28, 28) float images in [0, 1]: Fashion-MNIST test images if present."""
    if FMNIST.exists():
        with gzip.open(FMNIST) as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        return torch.from_numpy(raw[:n].copy()).float() / 255.0, "Fashion-MNIST test images"
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)), "random images"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Tensor], device: torch.device) -> tuple[float, Tensor]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def naive_occlusion(
    model: nn.Module, x: Tensor, target: Tensor, window: int, stride: int, fill: float
) -> Tensor:
    """One forward pass per patch position; per-pixel mean drop of the target probability."""
    n, _, h, w = x.shape
    out = torch.zeros(n, h, w, device=x.device)
    count = torch.zeros(h, w, device=x.device)
    with torch.no_grad():
        for i in range(n):
            xi = x[i : i + 1]
            base = torch.softmax(model(xi), 1)[0, target[i]]
            for r in window_starts(h, window, stride):
                for c in window_starts(w, window, stride):
                    occluded = xi.clone()
                    occluded[:, :, r : r + window, c : c + window] = fill
                    p = torch.softmax(model(occluded), 1)[0, target[i]]
                    out[i, r : r + window, c : c + window] += base - p
                    if i == 0:
                        count[r : r + window, c : c + window] += 1
    return out / count


def pearson_rows(a: Tensor, b: Tensor) -> Tensor:
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-30)


def median_of(times: dict[str, list[float]], key: str) -> float:
    return statistics.median(times[key])


def bench_occlusion(
    model: nn.Module, x: Tensor, target: Tensor, repeats: int, device: torch.device, n_naive: int
) -> None:
    from captum.attr import Occlusion as CaptumOcclusion

    window, stride, fill = 8, 2, 0.5
    occ = Occlusion(window, stride, fill)
    n_pos = occ.positions(x.shape[2], x.shape[3])
    captum = CaptumOcclusion(lambda z: torch.softmax(model(z), dim=1))

    runs: dict[str, Callable[[], Tensor]] = {
        "stresslab": lambda: occ.maps(model, x, target[:, None], batch_size=2048).drop[:, 0],
        "captum": lambda: captum.attribute(
            x,
            sliding_window_shapes=(1, window, window),
            strides=(1, stride, stride),
            baselines=fill,
            target=target,
            perturbations_per_eval=n_pos,
        )[:, 0].cpu(),
        # The naive loop is slow: it runs on the first ``n_naive`` images only.
        "naive loop": lambda: naive_occlusion(
            model, x[:n_naive], target[:n_naive], window, stride, fill
        ).cpu(),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict[str, Tensor] = {}
    for name, fn in runs.items():  # warm-up
        outs[name] = fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            t, outs[name] = timed(fn, device)
            times[name].append(t)
    n = len(x)
    print(
        f"\nOcclusion: {n} images 1x28x28 ({n_naive} for the naive loop), window {window}, "
        f"stride {stride}, gray fill, {n_pos} positions/image"
    )
    print(f"{'implementation':<16}{'median s':>10}{'maps/s':>10}{'max |diff| vs stresslab':>26}")
    rate = {}
    for name in runs:
        med = median_of(times, name)
        m = n_naive if name == "naive loop" else n
        rate[name] = m / med
        diff = (outs[name] - outs["stresslab"][:m]).abs().max().item()
        print(f"{name:<16}{med:>10.3f}{rate[name]:>10.2f}{diff:>26.2e}")
    print(
        f"ratio stresslab vs captum (maps/s):     {rate['stresslab'] / rate['captum']:.2f}x (target >= 1.0x)"
    )
    print(
        f"ratio stresslab vs naive (maps/s):      {rate['stresslab'] / rate['naive loop']:.2f}x "
        "(target >= 3x)"
    )


def bench_gradcam(model: nn.Module, x: Tensor, target: Tensor, repeats: int, device: torch.device) -> None:
    from captum.attr import LayerGradCam

    layer_name = default_cam_layer(model)
    layer = get_layer(model, layer_name)
    size = (x.shape[2], x.shape[3])
    ours = GradCam(layer_name)
    captum = LayerGradCam(model, layer)

    def captum_run() -> Tensor:
        m = captum.attribute(x, target=target, relu_attributions=True)
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0].detach().cpu()

    runs: dict[str, Callable[[], Tensor]] = {
        "stresslab": lambda: ours.attribute(model, x, target, batch_size=len(x)),
        "captum": captum_run,
    }
    pgc = None
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        pgc = GradCAM(model=model, target_layers=[layer])
        targets = [ClassifierOutputTarget(int(c)) for c in target]
        runs["pytorch-grad-cam"] = lambda: torch.from_numpy(pgc(input_tensor=x, targets=targets))
    except ImportError:
        print("\npytorch-grad-cam is not installed (pip install grad-cam); comparing with Captum only")

    times: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict[str, Tensor] = {}
    for name, fn in runs.items():
        outs[name] = fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            t, outs[name] = timed(fn, device)
            times[name].append(t)
    if pgc is not None:
        pgc.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    n = len(x)
    print(f"\nGrad-CAM: batch of {n} images 1x28x28, layer {layer_name!r}, upsampled bilinearly to 28x28")
    print(f"{'implementation':<18}{'median s':>10}{'maps/s':>10}{'min Pearson vs stresslab':>27}")
    for name in runs:
        med = median_of(times, name)
        r = pearson_rows(outs[name], outs["stresslab"])
        # Constant maps (all zero after ReLU) have no correlation; compare those directly.
        flat = outs["stresslab"].flatten(1)
        const = flat.max(1).values == flat.min(1).values
        r = r[~const]
        print(f"{name:<18}{med:>10.4f}{n / med:>10.1f}{(r.min().item() if len(r) else float('nan')):>27.6f}")
    ours_t = median_of(times, "stresslab")
    for name in runs:
        if name != "stresslab":
            target_note = " (target >= 2x)" if name == "pytorch-grad-cam" else ""
            print(f"ratio stresslab vs {name}: {median_of(times, name) / ours_t:.2f}x{target_note}")


class Clock:
    """Wall seconds spent inside timed sections since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def reset(self) -> None:
        self.total = 0.0

    def start(self, *_: object) -> None:
        self._start = time.perf_counter()

    def stop(self, *_: object) -> None:
        self.total += time.perf_counter() - self._start

    def timed(self, fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def run(*args: object, **kwargs: object) -> np.ndarray:
            self.start()
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop()

        return run


class TimedSaliency(Saliency):
    """Saliency whose ``attribute`` calls are timed on ``clock``."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def attribute(self, *args, **kwargs) -> Tensor:  # type: ignore[no-untyped-def]
        self.clock.start()
        try:
            return super().attribute(*args, **kwargs)
        finally:
            self.clock.stop()


def _quantus_explain(method: Saliency) -> Callable[..., np.ndarray]:
    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        return method.attribute(model, torch.as_tensor(inputs).float(), t, batch_size=len(t))[:, None].numpy()

    return explain


Run = Callable[[], np.ndarray]


def further_runs(
    model: nn.Module, x: Tensor, target: Tensor, samples: int, forward: Clock, explaining: Clock
) -> dict[str, tuple[Run, Run, Clock | None]]:
    """(stresslab, Quantus, timed) per test, the callables returning comparable numbers: ROAD
    accuracy per percentage (noise 0 so both are deterministic; the noise costs nothing), the
    per-image relevance mass and rank accuracy, and per-image max-sensitivity on the same noise
    draws. The clock, where there is one, times the model work both sides do: ``forward`` the
    model's forward passes (ROAD; the caller hooks it to the model), ``explaining`` the calls
    that explain the noisy images (max-sensitivity)."""
    import quantus

    method = TimedSaliency(explaining)
    maps = method.attribute(model, x, target, batch_size=len(x))
    xs, ys, a = x.numpy(), target.numpy(), maps[:, None].numpy()
    pct = [10.0, 30.0, 50.0, 70.0, 90.0]
    road_q = quantus.ROAD(percentages=pct, noise=0.0, disable_warnings=True)
    on_object = x[:, 0] > 0.05  # Fashion-MNIST's background is 0
    s = on_object[:, None].numpy()
    mass_q = quantus.RelevanceMassAccuracy(disable_warnings=True)
    rank_q = quantus.RelevanceRankAccuracy(disable_warnings=True)
    radius = 0.05
    noise = uniform_noise(tuple(x.shape), samples, radius, torch.Generator().manual_seed(3))

    def perturb_factory() -> Callable[..., np.ndarray]:
        step = iter(range(samples))

        def perturb(arr: np.ndarray, **_: object) -> np.ndarray:
            return np.clip(arr + noise[next(step)].reshape(arr.shape[0], -1).numpy(), 0.0, 1.0)

        return perturb

    def sens_q(explain: Callable[..., np.ndarray], **explain_kwargs: object) -> np.ndarray:
        perturb = perturb_factory()
        metric = quantus.MaxSensitivity(nr_samples=samples, perturb_func=perturb, disable_warnings=True)
        out = metric(
            model=model,
            x_batch=xs,
            y_batch=ys,
            a_batch=a,
            explain_func=explain,
            explain_func_kwargs=explain_kwargs,
            batch_size=len(x),
        )
        return np.asarray(out)

    # As a Quantus user: Captum's Saliency (abs=True, summed over the one channel) through
    # quantus.explain, the same maps as ours on 1-channel images.
    captum_explain = explaining.timed(quantus.explain)

    def road_ours() -> np.ndarray:
        curves = road_curves(model, x, maps, target, percentages=pct, noise=0.0)
        return torch.cat([curves.morf.mean(0), curves.lerf.mean(0)]).numpy()

    def road_theirs() -> np.ndarray:
        out = []
        for order in (
            a,
            a.max() + 1e-3 - a,
        ):  # Quantus removes most relevant first; LeRF = MoRF of the reverse
            res = road_q(model=model, x_batch=xs, y_batch=ys, a_batch=order, device="cpu", batch_size=len(x))
            out += [res[p] for p in pct]
        return np.array(out)

    def loc_ours() -> np.ndarray:
        mass = relevance_mass_accuracy(maps.clamp(min=0), on_object)
        return torch.cat([mass, relevance_rank_accuracy(maps, on_object)]).numpy()

    def loc_theirs() -> np.ndarray:
        kw = {"model": model, "x_batch": xs, "y_batch": ys, "a_batch": a, "s_batch": s, "batch_size": len(x)}
        return np.concatenate([np.asarray(mass_q(**kw)), np.asarray(rank_q(**kw))])

    def sens_ours() -> np.ndarray:
        g = torch.Generator().manual_seed(3)
        # The probe's batch (the run's eval batch, 1024): max_sensitivity chunks it on the CPU.
        kw = {"radius": radius, "samples": samples, "generator": g, "batch_size": 1024}
        return max_sensitivity(method, model, x, target, maps, **kw).numpy()

    return {
        "ROAD (MoRF + LeRF, 5 pcts)": (road_ours, road_theirs, forward),
        "localisation (mass + rank)": (loc_ours, loc_theirs, None),
        f"max-sensitivity ({samples} samples)": (
            sens_ours,
            lambda: sens_q(_quantus_explain(method)),
            explaining,
        ),
        "  Quantus: quantus.explain": (
            sens_ours,
            lambda: sens_q(captum_explain, method="Saliency", device="cpu"),
            explaining,
        ),
    }


def bench_further(model: nn.Module, x: Tensor, target: Tensor, repeats: int, samples: int) -> None:
    """stresslab vs Quantus on ROAD, localisation and max-sensitivity: images/s and max |diff|,
    and for ROAD and max-sensitivity the split of each side's wall time into the model work
    both must do and the rest."""
    forward = Clock()
    try:
        runs = further_runs(model, x, target, samples, forward, Clock())
    except ImportError:
        print(
            "\nquantus is not installed (pip install quantus==0.6.0): no ROAD, localisation, sensitivity rows"
        )
        return
    hook_handles = (
        model.register_forward_pre_hook(lambda *_: forward.start()),
        model.register_forward_hook(lambda *_: forward.stop()),
    )
    n = len(x)
    print(f"\nSaliency maps of {n} images 1x28x28 scored by stresslab and Quantus (same maps and noise)")
    print("images/s from wall time and from the process's CPU time (fair on a shared machine)")
    head = f"{'test':<30}{'stresslab img/s':>16}{'Quantus img/s':>15}{'ratio (wall)':>13}{'ratio (CPU)':>12}"
    print(f"{head}{'max |diff|':>12}")
    splits = []
    for name, (ours, theirs, clock) in runs.items():
        wall: dict[str, list[float]] = {"ours": [], "theirs": []}
        cpu: dict[str, list[float]] = {"ours": [], "theirs": []}
        work: dict[str, list[float]] = {"ours": [], "theirs": []}
        a, b = ours(), theirs()  # warm-up
        for _ in range(repeats):
            for key, fn in (("ours", ours), ("theirs", theirs)):
                if clock is not None:
                    clock.reset()
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
                work[key].append(clock.total if clock is not None else 0.0)
                a, b = (out, b) if key == "ours" else (a, out)
        w_ours, w_theirs = median_of(wall, "ours"), median_of(wall, "theirs")
        c_ratio = median_of(cpu, "theirs") / median_of(cpu, "ours")
        diff = float(np.nanmax(np.abs(a - b)))
        print(
            f"{name:<30}{n / w_ours:>16.1f}{n / w_theirs:>15.1f}{w_theirs / w_ours:>12.1f}x"
            f"{c_ratio:>11.1f}x{diff:>12.2e}"
        )
        if clock is not None:
            splits.append((name, w_ours, w_theirs, median_of(work, "ours"), median_of(work, "theirs")))
    for handle in hook_handles:
        handle.remove()
    print("target: >= 10x Quantus on the same work, the same numbers")
    print("\nModel work both sides do (ROAD: forward passes on the imputed images; max-sensitivity:")
    print("explaining the noisy images), median wall s; bound = Quantus's total / our model work,")
    print("the ratio if everything else of ours took no time; rest ratio = Quantus's rest / ours,")
    print("the speed-up on the work that is not the model's (target: >= 10x)")
    head = f"{'test':<30}{'ours: work':>11}{'rest':>8}{'Quantus: work':>15}{'rest':>8}{'bound':>8}"
    print(f"{head}{'rest ratio':>12}")
    for name, w_ours, w_theirs, k_ours, k_theirs in splits:
        print(
            f"{name:<30}{k_ours:>11.3f}{w_ours - k_ours:>8.3f}{k_theirs:>15.3f}"
            f"{w_theirs - k_theirs:>8.3f}{w_theirs / k_ours:>7.1f}x"
            f"{(w_theirs - k_theirs) / max(w_ours - k_ours, 1e-9):>11.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--occ-images", type=int, default=8, help="images for occlusion")
    ap.add_argument("--cam-images", type=int, default=128, help="batch size for Grad-CAM")
    ap.add_argument("--naive-images", type=int, default=1, help="images for the naive occlusion loop")
    ap.add_argument("--further-images", type=int, default=64, help="images for ROAD, localisation, ...")
    ap.add_argument("--samples", type=int, default=8, help="max-sensitivity noise draws per image")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="8 occlusion images, 128 Grad-CAM images, 1 naive image, 3 repeats",
    )
    ap.add_argument("--further-only", action="store_true", help="only the Quantus rows")
    args = ap.parse_args()
    if args.quick:
        args.occ_images, args.cam_images, args.naive_images, args.repeats = 4, 64, 1, 3
        args.further_images, args.samples = 32, 4
    device = torch.device(args.device)
    images, source = load_images(max(args.occ_images, args.cam_images, args.further_images), seed=0)
    info = DatasetInfo("fashion_mnist", tuple(str(k) for k in range(10)), 1, 28, 28, (0.286,), (0.353,))
    torch.manual_seed(0)
    model = build_model("custom_cnn", info).to(device).eval()
    with torch.no_grad():
        preds = model(images.to(device)).argmax(1)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, model custom_cnn "
        f"(untrained, seed 0), {source}, {args.repeats} repeats (medians)"
    )
    if not args.further_only:
        xo = images[: args.occ_images].to(device)
        n_naive = max(1, min(args.naive_images, args.occ_images))
        bench_occlusion(model, xo, preds[: args.occ_images], args.repeats, device, n_naive)
        xc = images[: args.cam_images].to(device)
        bench_gradcam(model, xc, preds[: args.cam_images], args.repeats, device)
    if device.type == "cpu":  # Quantus's numpy paths run on the CPU
        k = args.further_images
        bench_further(model, images[:k], preds[:k].cpu(), args.repeats, args.samples)


if __name__ == "__main__":
    main()
