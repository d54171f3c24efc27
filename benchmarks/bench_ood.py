"""Out-of-distribution scores: stresslab's five scores vs pytorch-ood's detectors.

The same logits and features (the default model, untrained weights seeded, on Fashion-MNIST:
``--n-fit`` training images to fit Mahalanobis and kNN, ``--n`` test images scored, random
images when the Debian files are absent) go to both; the forward pass is not timed. Per
score: median seconds over repeats (fit + score), the ratio pytorch-ood / stresslab, and the
AUROC of test images vs their inverted copies from each (they must agree within 1e-3).

    pip install pytorch-ood==0.4.0      # for this benchmark only
    .venv/bin/python benchmarks/bench_ood.py           # 2-core CPU: under a minute when idle
    .venv/bin/python benchmarks/bench_ood.py --quick
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
from torch import Tensor

from stresslab.data.base import DatasetInfo
from stresslab.metrics.ood import auroc
from stresslab.models import build_model
from stresslab.probes.ood.scores import energy, fit_gaussian, knn_distance, mahalanobis, max_logit, msp

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def load(name: str, n: int, seed: int) -> Tensor:
    path = FMNIST / name
    if path.exists():
        with gzip.open(path) as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        return torch.from_numpy(raw[:n].copy()).float() / 255.0
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def outputs(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    feats, logits = [], []
    for i in range(0, len(x), 1000):
        f = model.features(x[i : i + 1000])  # type: ignore[operator]
        feats.append(f)
        logits.append(model.head(f))  # type: ignore[operator]
    return torch.cat(logits), torch.cat(feats)


def median_time(fn: Callable[[], tuple[Tensor, Tensor]], repeats: int) -> tuple[float, tuple[Tensor, Tensor]]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-fit", type=int, default=10000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2,000 images, 3 repeats")
    args = ap.parse_args()
    if args.quick:
        args.n, args.n_fit, args.repeats = 2000, 2000, 3
    import pytorch_ood.detector as pood

    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    info = DatasetInfo("fashion_mnist", tuple(str(i) for i in range(10)), 1, 28, 28, (0.29,), (0.35,))
    model = build_model("fast_cnn", info).eval()
    test = load("t10k-images-idx3-ubyte.gz", args.n, 1)
    train_x = load("train-images-idx3-ubyte.gz", args.n_fit, 2)
    l_in, f_in = outputs(model, test)
    l_out, f_out = outputs(model, 1.0 - test)
    _, f_tr = outputs(model, train_x)
    y_tr = _labels(args.n_fit)
    k = args.k

    def ours_feature(fn: Callable[[Tensor], Tensor]) -> Callable[[], tuple[Tensor, Tensor]]:
        return lambda: (fn(f_in), fn(f_out))

    def maha_ours() -> tuple[Tensor, Tensor]:
        g = fit_gaussian(f_tr, y_tr)
        return mahalanobis(f_in, g), mahalanobis(f_out, g)

    def maha_theirs() -> tuple[Tensor, Tensor]:
        d = pood.Mahalanobis(None).fit_features(f_tr, y_tr)
        return d.predict_features(f_in), d.predict_features(f_out)

    def knn_theirs() -> tuple[Tensor, Tensor]:
        d = pood.KNN(None, k=k).fit_features(f_tr, y_tr)
        return d.predict_features(f_in), d.predict_features(f_out)

    pairs: dict[str, tuple[Callable[[], tuple[Tensor, Tensor]], Callable[[], tuple[Tensor, Tensor]]]] = {
        "msp": (
            lambda: (msp(l_in), msp(l_out)),
            lambda: (pood.MaxSoftmax.score(l_in), pood.MaxSoftmax.score(l_out)),
        ),
        "max_logit": (
            lambda: (max_logit(l_in), max_logit(l_out)),
            lambda: (pood.MaxLogit.score(l_in), pood.MaxLogit.score(l_out)),
        ),
        "energy": (
            lambda: (energy(l_in), energy(l_out)),
            lambda: (pood.EnergyBased.score(l_in), pood.EnergyBased.score(l_out)),
        ),
        "mahalanobis": (maha_ours, maha_theirs),
        "knn": (lambda: (knn_distance(f_in, f_tr, k), knn_distance(f_out, f_tr, k)), knn_theirs),
    }
    threads = torch.get_num_threads()
    print(f"{args.n} test images (+ {args.n} inverted), {args.n_fit} fit images, k = {k}, {threads} threads")
    head = ("score", "stresslab s", "pytorch-ood s", "ratio", "AUROC ours", "theirs")
    print("{:<12} {:>12} {:>14} {:>7} {:>11} {:>8}".format(*head))
    total_ours = total_theirs = 0.0
    for name, (ours, theirs) in pairs.items():
        with torch.no_grad():
            t_ours, (a_in, a_out) = median_time(ours, args.repeats)
            t_theirs, (b_in, b_out) = median_time(theirs, args.repeats)
        total_ours += t_ours
        total_theirs += t_theirs
        au_a, au_b = auroc(a_in, a_out), auroc(b_in.detach(), b_out.detach())
        flag = "" if abs(au_a - au_b) < 1e-3 else "  DISAGREE"
        ratio = t_theirs / t_ours
        print(
            f"{name:<12} {t_ours:>12.4f} {t_theirs:>14.4f} {ratio:>6.2f}x {au_a:>11.4f} {au_b:>8.4f}{flag}",
            flush=True,
        )
    print(f"{'all five':<12} {total_ours:>12.4f} {total_theirs:>14.4f} {total_theirs / total_ours:>6.2f}x")


def _labels(n: int) -> Tensor:
    path = FMNIST / "train-labels-idx1-ubyte.gz"
    if path.exists():
        with gzip.open(path) as f:
            return torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64))
    return torch.arange(n) % 10


if __name__ == "__main__":
    main()
