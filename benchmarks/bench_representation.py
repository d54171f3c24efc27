"""Representation benchmarks: NT-Xent and SimCLR pretraining against lightly, kNN search
against scikit-learn. Medians over repeats, measured alternately in one process.

1. NT-Xent forward + backward on random projections (N x 128) against lightly's
   ``NTXentLoss``; the loss values must agree within 1e-5.
2. SimCLR pretraining throughput (source images/s, two views each) on Fashion-MNIST with the
   same encoder (``custom_cnn``'s features), batch size, projection head size, Adam and
   augmentations (random resized crop 0.2-1, flip, blur p 0.5 sigma 0.1-1; no colour ops on
   grayscale): stresslab's ``pretrain`` (batched views on the device) against lightly's
   pipeline as its docs write it (``SimCLRTransform`` on PIL images through a DataLoader,
   ``SimCLRProjectionHead``, ``NTXentLoss``).
3. Cosine kNN search (k = 10) of Q query embeddings among N keys of the model's feature
   width (random data): ``cosine_topk`` against ``NearestNeighbors(algorithm="brute",
   metric="cosine")``; the neighbours must be identical (up to exact distance ties).

    .venv/bin/python benchmarks/bench_representation.py            # 60,000 x 10,000 kNN
    .venv/bin/python benchmarks/bench_representation.py --quick    # small sizes, ~2 minutes
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stresslab.data import load_split
from stresslab.data.base import Split
from stresslab.devices import pick_device
from stresslab.metrics.neighbors import cosine_topk
from stresslab.models import build_model
from stresslab.train.config import PretrainConfig
from stresslab.train.contrastive import nt_xent_loss
from stresslab.train.pretrain import pretrain

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
BLUR_SIGMA = (0.1, 1.0)


def _median_times(fns, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Median seconds of each function, run alternately (after one warm-up round)."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats + 1):
        for f, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            f()
            if r > 0:
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def bench_loss(batch: int, repeats: int, device: torch.device) -> None:
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(0)
    a = torch.randn(batch, 128, generator=g).to(device).requires_grad_()
    b = torch.randn(batch, 128, generator=g).to(device).requires_grad_()
    ref_fn = NTXentLoss(temperature=0.5)

    def ours() -> None:
        nt_xent_loss(a, b, 0.5).backward()

    def theirs() -> None:
        ref_fn(a, b).backward()

    with torch.no_grad():
        diff = abs(float(nt_xent_loss(a, b, 0.5)) - float(ref_fn(a, b)))
    t_ours, t_ref = _median_times([ours, theirs], repeats)
    print(
        f"  NT-Xent fwd+bwd, batch {batch} x 128: stresslab {t_ours * 1e3:7.2f} ms  lightly "
        f"{t_ref * 1e3:7.2f} ms  ratio {t_ref / t_ours:.2f}x  |loss difference| {diff:.1e} "
        f"({'ok' if diff <= 1e-5 else 'FAILS 1e-5'})"
    )


def torchvision_root(tmp: Path) -> Path:
    """The Debian IDX .gz files unpacked where torchvision's FashionMNIST looks for them."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN_DIR.glob("*-ubyte.gz"):
        with gzip.open(gz, "rb") as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def stresslab_pretrain(split: Split, n: int, batch: int, device: torch.device) -> float:
    empty_x, empty_y = split.train_x[:0], split.train_y[:0]
    sub = Split(split.info, split.train_x[:n], split.train_y[:n], empty_x, empty_y, empty_x, empty_y)
    torch.manual_seed(0)
    model = build_model("custom_cnn", split.info)
    cfg = PretrainConfig(
        epochs=1,
        batch_size=batch,
        augment={"crop_scale": (0.2, 1.0), "hflip": 0.5, "blur": 0.5, "blur_sigma": BLUR_SIGMA},
    )
    t0 = time.perf_counter()
    pretrain(model, sub, cfg, device=device, seed=0, channels_last=device.type == "cpu")
    return (n // batch) * batch / (time.perf_counter() - t0)


def lightly_pretrain(
    root: Path, split: Split, n: int, batch: int, device: torch.device, workers: int
) -> float:
    from lightly.loss import NTXentLoss
    from lightly.models.modules.heads import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets

    tf = SimCLRTransform(
        input_size=28,
        cj_prob=0.0,
        random_gray_scale=0.0,
        min_scale=0.2,
        gaussian_blur=0.5,
        sigmas=BLUR_SIGMA,
        hf_prob=0.5,
        normalize=None,
    )
    ds = Subset(datasets.FashionMNIST(str(root), train=True, download=False, transform=tf), range(n))
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers)
    torch.manual_seed(0)
    model = build_model("custom_cnn", split.info).to(device)
    head = SimCLRProjectionHead(256, 256, 128).to(device)
    loss_fn = NTXentLoss(temperature=0.5)
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    seen = 0
    for (x0, x1), _ in loader:
        x0, x1 = x0.to(device), x1.to(device)
        loss = loss_fn(head(model.features(x0)), head(model.features(x1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(x0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def bench_pretrain(
    split: Split, n: int, batch: int, repeats: int, device: torch.device, workers: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        ours, ref = [], []
        for r in range(repeats + 1):  # the first round warms up and is dropped
            a = stresslab_pretrain(split, n, batch, device)
            b = lightly_pretrain(root, split, n, batch, device, workers)
            if r > 0:
                ours.append(a)
                ref.append(b)
    o, t = statistics.median(ours), statistics.median(ref)
    print(
        f"  SimCLR pretraining, custom_cnn, batch {batch}, {n} images: stresslab {o:7.0f} img/s  "
        f"lightly ({workers} DataLoader workers) {t:7.0f} img/s  ratio {o / t:.2f}x"
    )


def bench_knn(n_keys: int, n_queries: int, dim: int, k: int, repeats: int, device: torch.device) -> None:
    from sklearn.neighbors import NearestNeighbors

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(n_keys, dim, generator=g)
    queries = torch.randn(n_queries, dim, generator=g)
    kd, qd = keys.to(device), queries.to(device)
    result = {}

    def ours() -> None:
        s, i = cosine_topk(qd, kd, k)
        result["ours"] = (s.cpu().numpy(), i.cpu().numpy())

    def theirs() -> None:
        nn_ = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(keys.numpy())
        result["sk"] = nn_.kneighbors(queries.numpy())

    t_ours, t_ref = _median_times([ours, theirs], repeats)
    sim, idx = result["ours"]
    dist, ref = result["sk"]
    same = (idx == ref).all(axis=1)
    # Rows that differ must differ only by near-equal distances (a tie broken the other way).
    ties = np.abs(np.sort(1 - sim, axis=1) - np.sort(dist, axis=1)).max(axis=1) < 1e-6
    ok = bool((same | ties).all())
    print(
        f"  kNN k={k}, {n_keys} x {n_queries} x {dim}: stresslab {t_ours:6.2f} s  scikit-learn "
        f"{t_ref:6.2f} s  ratio {t_ref / t_ours:.2f}x  identical rows {same.mean():.4%} "
        f"({'ok' if ok else 'DIFFERENT beyond ties'})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes on 2 cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0, help="lightly's DataLoader workers")
    ap.add_argument("--only", nargs="*", choices=["loss", "pretrain", "knn"], default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    n_pre, knn = (2560, (20000, 2000)) if args.quick else (10240, (60000, 10000))
    split = load_split("fashion_mnist", val_fraction=0.0)
    dim = int(build_model("custom_cnn", split.info).feature_dim)  # 256
    print(f"device {device}, torch threads {torch.get_num_threads()}, medians of {args.repeats} repeats")
    parts = args.only or ["loss", "pretrain", "knn"]
    if "loss" in parts:
        for batch in (256, 1024):
            bench_loss(batch, max(args.repeats, 10), device)
    if "pretrain" in parts:
        bench_pretrain(split, n_pre, 256, args.repeats, device, args.workers)
    if "knn" in parts:
        bench_knn(*knn, dim, 10, args.repeats, device)


if __name__ == "__main__":
    main()
