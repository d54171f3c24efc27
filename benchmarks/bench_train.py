"""Training throughput: stresslab's trainer vs the plain PyTorch loop of the user studies.

The reference is what the studies write by hand: torchvision ``FashionMNIST`` with
``ToTensor`` + ``Normalize`` per sample through a ``DataLoader`` (batch 128, shuffled),
then forward/backward/Adam. stresslab keeps the data as one preloaded tensor, slices
batches, and trains channels_last. Same model (``custom_cnn``), batch size, optimizer
and number of images, measured alternately in one process; medians over repeats.

    .venv/bin/python benchmarks/bench_train.py            # 2-core CPU: about 2 minutes
    .venv/bin/python benchmarks/bench_train.py --images 25600 --repeats 5
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from stresslab.data import load_split
from stresslab.data.base import Split
from stresslab.devices import pick_device
from stresslab.models import build_model, model_summary
from stresslab.train.config import TrainConfig
from stresslab.train.loop import train

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def torchvision_root(tmp: Path) -> Path:
    """Unpack the Debian IDX .gz files where torchvision's FashionMNIST looks for them."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN_DIR.glob("*-ubyte.gz"):
        with gzip.open(gz, "rb") as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def reference_epoch(
    root: Path, info, n_images: int, batch_size: int, device, workers: int, model_name: str
) -> float:
    """Images/s of the hand-written loop over the first ``n_images`` training images."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    ds = Subset(datasets.FashionMNIST(str(root), train=True, download=False, transform=tf), range(n_images))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers)
    torch.manual_seed(0)
    model = build_model(model_name, info).to(device)
    model.normalize.mean.zero_()  # the loader normalizes already; keep the work identical otherwise
    model.normalize.std.fill_(1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - t0)


def compute_only(split: Split, n_images: int, batch_size: int, device, model_name: str) -> float:
    """Images/s of forward, backward and Adam on ready-made contiguous batches: no data path.

    The reference's model work, with its data loading removed; the ratio of this to the
    reference is the most any data path can gain without changing the arithmetic.
    """
    torch.manual_seed(0)
    model = build_model(model_name, split.info).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [
        (
            split.train_x[i : i + batch_size].float().div(255).to(device),
            split.train_y[i : i + batch_size].to(device),
        )
        for i in range(0, n_images, batch_size)
    ]
    t0 = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - t0)


def stresslab_epoch(
    split: Split, n_images: int, batch_size: int, device, model_name: str, amp: str, channels_last: str
) -> float:
    sub = Split(
        split.info,
        split.train_x[:n_images],
        split.train_y[:n_images],
        split.train_x[:0],
        split.train_y[:0],
        split.test_x[:0],
        split.test_y[:0],
    )
    torch.manual_seed(0)
    model = build_model(model_name, split.info)
    cfg = TrainConfig(
        epochs=1, batch_size=batch_size, schedule="constant", amp=amp, channels_last=channels_last
    )
    t0 = time.perf_counter()
    train(model, sub, cfg, device=device, seed=0)
    return n_images / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=12800, help="images per timed epoch")
    ap.add_argument("--quick", action="store_true", help="6,400 images per epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument(
        "--workers", type=int, default=0, help="reference DataLoader workers (the studies use 0-2)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="custom_cnn", help="a registered model name")
    args = ap.parse_args()
    if args.quick:
        args.images = 6400
    device = pick_device(args.device)
    split = load_split("fashion_mnist", val_fraction=0.0)
    info = split.info
    summary = model_summary(build_model(args.model, info), info)
    train_gflop_per_image = 3 * summary["gflops"]  # forward + backward ~ 3x forward

    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        modes = [("off", "off"), ("off", "on")] if device.type == "cpu" else [("off", "off"), ("bf16", "on")]
        ref, bare, ours = [], [], {m: [] for m in modes}
        for r in range(args.repeats + 1):  # first round warms up and is dropped
            a = reference_epoch(root, info, args.images, args.batch_size, device, args.workers, args.model)
            b = {
                m: stresslab_epoch(split, args.images, args.batch_size, device, args.model, *m) for m in modes
            }
            c = compute_only(split, args.images, args.batch_size, device, args.model)
            if r > 0:
                ref.append(a)
                bare.append(c)
                for m in modes:
                    ours[m].append(b[m])
    ref_med = statistics.median(ref)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {args.model} "
        f"{summary['params']:,} params, {summary['gflops'] * 1e3:.1f} MFLOP forward per image"
    )
    print(f"{args.images} images per epoch, batch {args.batch_size}, Adam, {args.repeats} repeats (medians)")
    print(
        f"  reference (DataLoader + ToTensor/Normalize, {args.workers} workers): {ref_med:8.0f} img/s  "
        f"{ref_med * train_gflop_per_image:6.1f} GFLOP/s"
    )
    bare_med = statistics.median(bare)
    print(
        f"  model work alone, contiguous, no data path:{'':11}{bare_med:8.0f} img/s  "
        f"{bare_med * train_gflop_per_image:6.1f} GFLOP/s  ratio {bare_med / ref_med:.2f}x (ceiling)"
    )
    for (amp, cl), vals in ours.items():
        med = statistics.median(vals)
        print(
            f"  stresslab (amp {amp}, channels_last {cl}):{'':14}{med:8.0f} img/s  "
            f"{med * train_gflop_per_image:6.1f} GFLOP/s  ratio {med / ref_med:.2f}x"
        )


if __name__ == "__main__":
    main()
