"""PGD-10 L-inf throughput: stresslab against torchattacks and Captum on the same model and batch.

Run:  .venv/bin/python benchmarks/bench_attacks.py [--quick] [--device cpu|cuda] [--repeats 5]

Needs torchattacks for its column (``pip install torchattacks``; a benchmark-only peer, never a
dependency of stresslab); Captum is already a dependency. A small CNN is trained for a few hundred
steps on Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist/, Debian package
``dataset-fashion-mnist``) so that robust accuracy means something, then every library runs
PGD-10 (epsilon 0.1, step 0.025, random start) on the same test batch. Each timing covers the
attack and one forward pass on its output (to read robust accuracy); the implementations take
turns within each repeat (so changing machine load hits all alike), medians over the repeats.

stresslab is timed twice: ``early_stop=False`` (the same work as the peers: every image takes all
10 steps) and the probe's default ``early_stop=True`` (an image stops at its first misclassified
iterate, which never raises robust accuracy).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import struct
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.attacks import PGD
from stresslab.models.base import Classifier
from stresslab.scoped import inference_scope

FASHION = Path("/usr/share/datasets/fashion-mnist")
EPS, STEPS = 0.1, 10
ALPHA = 2.5 * EPS / STEPS


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or raw) as a numpy array."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(split: str) -> tuple[Tensor, Tensor]:
    """Images (N, 1, 28, 28) float in [0, 1] and labels (N,) int64."""
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(FASHION / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(FASHION / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(x.copy()).float().div(255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class SmallCNN(Classifier):
    """conv32-pool-conv64-pool-fc128-fc10 with BatchNorm, Normalize inside."""

    cam_layer = "body.4"

    def __init__(self) -> None:
        super().__init__((0.2860,), (0.3530,))
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)


def train_model(steps: int, device: torch.device, seed: int = 0) -> SmallCNN:
    """Adam, batch 128, ``steps`` steps on the Fashion-MNIST training set."""
    torch.manual_seed(seed)
    x, y = load_fashion("train")
    model = SmallCNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,), generator=g)
        loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_round_robin(
    fns: dict[str, Callable[[], float]], repeats: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """Per name: (median seconds, robust accuracy of the last repeat).

    One untimed warm-up call each, then the implementations take turns within every repeat, so a
    change in machine load during the run hits all of them alike.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    accs: dict[str, float] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            accs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), accs[k]) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch and fewer repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--batch", type=int, default=None, help="test images attacked (default 1000, quick 500)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, quick 3)")
    parser.add_argument("--train-steps", type=int, default=400)
    args = parser.parse_args()
    device = torch.device(args.device)
    n = args.batch or (500 if args.quick else 1000)
    repeats = args.repeats or (3 if args.quick else 5)
    torch.set_num_threads(torch.get_num_threads())

    # Captum warns that it switched on input gradients itself; that is expected here.
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    model = train_model(args.train_steps, device)
    xt, yt = load_fashion("test")
    x, y = xt[:n].to(device), yt[:n].to(device)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{n} Fashion-MNIST test images, PGD-{STEPS} L-inf eps {EPS} step {ALPHA}, {repeats} repeats"
    )
    print(f"clean accuracy {clean:.4f}")

    def acc_of(adv: Tensor) -> float:
        with torch.no_grad():
            return float((model(adv).argmax(1) == y).float().mean())

    fns: dict[str, Callable[[], float]] = {}
    for label, early in (("stresslab (early_stop=False)", False), ("stresslab (early_stop=True)", True)):
        attack = PGD(norm="linf", steps=STEPS, step_size=ALPHA, early_stop=early)

        def run_ours(attack: PGD = attack) -> float:
            g = torch.Generator(device=device).manual_seed(0)
            with inference_scope(model):
                out = attack.run(model, x, y, EPS, generator=g)
            return float((out.logits.argmax(1) == y).float().mean())

        fns[label] = run_ours

    try:
        import torchattacks

        ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
        fns[f"torchattacks {torchattacks.__version__}"] = lambda: acc_of(ta(x, y))
    except ImportError:
        print("torchattacks not installed: pip install torchattacks (benchmark only)")

    import captum
    from captum.robust import PGD as CaptumPGD

    cap = CaptumPGD(model, lower_bound=0.0, upper_bound=1.0)

    def run_captum() -> float:
        with inference_scope(model):
            adv = cap.perturb(x, radius=EPS, step_size=ALPHA, step_num=STEPS, target=y, random_start=True)
        return acc_of(adv)

    fns[f"captum {captum.__version__} robust.PGD"] = run_captum
    rows = [(name, *res) for name, res in timed_round_robin(fns, repeats, device).items()]

    ref = next((r for r in rows if r[0].startswith("torchattacks")), None)
    print(
        f"{'implementation':<34} {'median s':>9} {'images/s':>10} {'robust acc':>11} {'vs torchattacks':>16}"
    )
    for name, sec, acc in rows:
        ratio = f"{ref[1] / sec:.2f}x" if ref else "n/a"
        print(f"{name:<34} {sec:>9.3f} {n / sec:>10.0f} {acc:>11.4f} {ratio:>16}")
    if ref:
        ours = rows[0]
        print(
            f"robust accuracy difference stresslab (early_stop=False) - torchattacks: "
            f"{100 * (ours[2] - ref[2]):+.2f} points"
        )


if __name__ == "__main__":
    main()
