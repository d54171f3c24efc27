"""Corruption generation throughput: stresslab against ``imagecorruptions`` on 32x32 RGB images.

Run:  .venv/bin/python benchmarks/bench_corruptions.py [--quick] [--repeats 3] [--device cpu|cuda]
      .venv/bin/python benchmarks/bench_corruptions.py --probe   (time the default probe instead)

The peer is the maintained fork of ``imagecorruptions`` (``pip install imagecorruptions-imaug``;
a benchmark-only peer, never a dependency of stresslab). It corrupts one uint8 (H, W, 3) image
per call and needs at least 32 px, so both sides work on the same 32x32 RGB images (smooth
gradients with discs and rectangles), each in its own input format: stresslab takes the uint8
batch, converts it to float in [0, 1] and corrupts the whole batch at once; the peer loops over
images. Both run the same 15 corruptions at the same severities. The peer uses its own
ImageNet-C-derived parameter tables (stresslab uses the CIFAR-10-C ones), so the work per image
is similar but not identical. Each figure is the median over the repeats of images per second
(one image at one severity = one image); "overall" is the rate at which images get all 15
corruptions (per-image times summed over the corruptions, severities averaged).

On a loaded machine, ``--threads 1`` can be many times faster than torch's default of one
thread per core (OpenMP workers wait for each other when cores are shared); the printout
names the thread count.

``--probe`` times the ``corruption`` probe with its defaults (15 corruptions x 5 severities,
1,000 images) on 28x28 grayscale images (Fashion-MNIST test images when the Debian package
``dataset-fashion-mnist`` is installed, else synthetic) with the ``simple_cnn`` model.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stresslab.corruptions import CORRUPTIONS
from stresslab.data.base import to_float

FASHION = Path("/usr/share/datasets/fashion-mnist")


def natural_images(n: int, channels: int, size: int, seed: int = 0) -> Tensor:
    """uint8 (n, channels, size, size): colour gradients with random discs and rectangles."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    out = []
    for _ in range(n):
        a = torch.rand(1, generator=g)
        img = torch.stack([0.2 + 0.5 * xx * (1 - 0.4 * yy), 0.7 - 0.4 * yy * a, 0.3 + 0.3 * xx * yy])[
            :channels
        ]
        for k in range(4):
            p = torch.rand(4, generator=g)
            colour = torch.rand(3, generator=g)[:channels].view(-1, 1, 1)
            if k % 2 == 0:
                mask = (xx - p[0]) ** 2 + (yy - p[1]) ** 2 < (0.05 + 0.15 * p[2]) ** 2
            else:
                x0, y0 = p[0] * 0.7, p[1] * 0.7
                mask = (xx > x0) & (xx < x0 + 0.1 + 0.3 * p[2]) & (yy > y0) & (yy < y0 + 0.1 + 0.3 * p[3])
            img = torch.where(mask, colour, img)
        out.append(img)
    return (torch.stack(out) * 255).round().to(torch.uint8)


def time_ours(x: Tensor, name: str, severities: list[int], device: torch.device) -> float:
    """Seconds to corrupt the uint8 batch ``x`` at every severity (conversion included)."""
    fn = CORRUPTIONS.get(name)
    gen = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for s in severities:
        out = fn(to_float(x.to(device)), s, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    del out
    return time.perf_counter() - start


def time_peer(images: list[np.ndarray], name: str, severities: list[int]) -> float:
    from imagecorruptions import corrupt

    np.random.seed(0)
    start = time.perf_counter()
    for s in severities:
        for img in images:
            corrupt(img, corruption_name=name, severity=s)
    return time.perf_counter() - start


def bench_generation(args: argparse.Namespace) -> None:
    try:
        import imagecorruptions  # noqa: F401
    except ImportError:
        raise SystemExit(
            "The peer is missing: pip install imagecorruptions-imaug "
            "(benchmark only, not a stresslab dependency)"
        ) from None
    device = torch.device(args.device)
    severities = [1, 2, 3, 4, 5]
    names = CORRUPTIONS.names()
    x = natural_images(args.n, 3, 32)
    peer_images = [img.permute(1, 2, 0).numpy().copy() for img in x[: args.peer_n]]
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"images: stresslab {args.n}, imagecorruptions {args.peer_n}; 32x32 RGB; severities 1-5; "
        f"repeats {args.repeats}"
    )
    print(f"{'corruption':20s} {'stresslab img/s':>16s} {'imagecorruptions img/s':>23s} {'ratio':>8s}")
    total_ours, total_peer = 0.0, 0.0
    ratios = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            # Warm-up: caches, JIT compilation (the peer's glass blur uses numba), allocator.
            time_ours(x[:2], name, severities, device)
            time_peer(peer_images[:1], name, severities)
            ours = statistics.median(time_ours(x, name, severities, device) for _ in range(args.repeats))
            peer = statistics.median(time_peer(peer_images, name, severities) for _ in range(args.repeats))
            rate_ours = args.n * len(severities) / ours
            rate_peer = args.peer_n * len(severities) / peer
            total_ours += 1 / rate_ours
            total_peer += 1 / rate_peer
            ratios.append(rate_ours / rate_peer)
            print(f"{name:20s} {rate_ours:16.0f} {rate_peer:23.1f} {rate_ours / rate_peer:7.1f}x")
    overall_ours, overall_peer = 1 / total_ours, 1 / total_peer
    print(
        f"{'overall (all 15)':20s} {overall_ours:16.0f} {overall_peer:23.1f} "
        f"{overall_ours / overall_peer:7.1f}x"
    )
    print(f"median per-corruption ratio: {statistics.median(ratios):.1f}x; min {min(ratios):.1f}x")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def bench_probe(args: argparse.Namespace) -> None:
    from stresslab.data.base import DatasetInfo, Split
    from stresslab.models import build_model
    from stresslab.probes.base import ProbeContext
    from stresslab.probes.corruption import CorruptionProbe
    from stresslab.probes.predictions import Predictions

    device = torch.device(args.device)
    images = FASHION / "t10k-images-idx3-ubyte.gz"
    if images.exists():
        x = torch.from_numpy(read_idx(images)[:2000].copy()).unsqueeze(1)
        y = torch.from_numpy(read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:2000].astype(np.int64))
        source = "Fashion-MNIST test images"
    else:
        x = natural_images(2000, 1, 28)
        y = torch.arange(2000) % 10
        source = "synthetic images"
    info = DatasetInfo("bench", tuple(str(i) for i in range(10)), 1, 28, 28, (0.286,), (0.353,))
    model = build_model("simple_cnn", info, {}).to(device)
    split = Split(info, x[:10], y[:10], x[:10], y[:10], x, y)
    pred = Predictions.compute(model, x, y, split.test_index, batch_size=args.batch_size, device=device)
    ctx = ProbeContext(model, split, device, 0, args.batch_size, pred, pred)
    start = time.perf_counter()
    res = CorruptionProbe().run(ctx)
    seconds = time.perf_counter() - start
    print(
        f"corruption probe, defaults (15 corruptions x 5 severities, max_images=1000), simple_cnn, "
        f"{source} 28x28, batch {args.batch_size}, device={device}, threads={torch.get_num_threads()}: "
        f"{seconds:.1f} s ({int(res.metrics['n_images'])} images, {75 * 1000 / seconds:.0f} corrupted "
        "images/s including the forward passes, tables and figures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (about a minute)")
    parser.add_argument("--n", type=int, default=500, help="images per stresslab batch")
    parser.add_argument("--peer-n", type=int, default=20, help="images the peer corrupts per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--probe", action="store_true", help="time the corruption probe with its defaults")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        # On a loaded machine one thread can beat two by far: OpenMP workers wait on each other.
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.peer_n, args.repeats = 200, 10, 3
    if args.probe:
        bench_probe(args)
    else:
        bench_generation(args)


if __name__ == "__main__":
    main()
