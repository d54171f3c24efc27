"""Data audit: stresslab's image-quality flags and duplicate search vs CleanVision.

The same ``--n`` Fashion-MNIST test images (random ones with planted issues when the Debian
files are absent) go to both. stresslab: :func:`image_properties`, fences from the same
images, the flags, exact duplicates (hash) and near duplicates (signature correlation >=
0.99). CleanVision: ``Imagelab.find_issues`` for dark, light, blurry, low information,
exact and near duplicates, on the images as PIL images (a torch dataset, no files), with
``n_jobs`` = the thread count. Median seconds over repeats and the ratio, then the agreement
per flag: images each flags, both, and Cohen's kappa.

    pip install cleanvision==0.3.7      # for this benchmark only
    .venv/bin/python benchmarks/bench_data_audit.py           # 2-core CPU: a few minutes
    .venv/bin/python benchmarks/bench_data_audit.py --quick
"""

from __future__ import annotations

import argparse
import gzip
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.probes.data_audit.duplicates import exact_within, flagged, near_within
from stresslab.probes.data_audit.flags import fences, flag
from stresslab.probes.data_audit.properties import image_properties, pixel_signature

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
ISSUES = ("dark", "light", "blurry", "low_information", "exact_duplicates", "near_duplicates")


def load(n: int) -> Tensor:
    """uint8 (n, 1, 28, 28) Fashion-MNIST test images, or noise with a few planted issues."""
    if FMNIST.exists():
        with gzip.open(FMNIST) as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        return torch.from_numpy(raw[:n].copy())
    x = torch.randint(30, 221, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x[:5] = 0
    x[5:10] = x[10:15]
    return x


def stresslab_flags(x: Tensor, near_threshold: float = 0.99) -> dict[str, np.ndarray]:
    """Bool (N,) per issue in :data:`ISSUES`, fences from ``x`` itself."""
    props = image_properties(x)
    f = flag(props, fences(props))
    y = torch.zeros(len(x), dtype=torch.long)
    exact = exact_within(x, y)
    near = near_within(pixel_signature(x), torch.arange(len(x)), y, near_threshold)
    return {
        "dark": f["dark"].numpy(),
        "light": f["light"].numpy(),
        "blurry": f["blurry"].numpy(),
        "low_information": f["low_information"].numpy(),
        "exact_duplicates": flagged(exact, len(x), "both").numpy(),
        "near_duplicates": flagged(near, len(x), "both").numpy(),
    }


class PilImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """uint8 images (N, C, H, W) as ``(PIL image, 0)`` items (module level: worker processes
    pickle it)."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        a = self.x[i].permute(1, 2, 0).numpy()
        return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a), 0


def cleanvision_flags(x: Tensor, workdir: Path | None = None, n_jobs: int = 1) -> dict[str, np.ndarray]:
    """Bool (N,) per issue in :data:`ISSUES` from CleanVision's ``Imagelab`` on the images.

    CleanVision's near duplicates exclude exact ones; here they include them, as stresslab's.
    """
    from cleanvision import Imagelab

    logging.getLogger("cleanvision").setLevel(logging.ERROR)
    lab = Imagelab(torchvision_dataset=PilImages(x))
    lab.find_issues({k: {} for k in ISSUES}, n_jobs=n_jobs, verbose=False)
    df = lab.issues
    out = {k: df[f"is_{k}_issue"].to_numpy(dtype=bool) for k in ISSUES}
    out["near_duplicates"] = out["near_duplicates"] | out["exact_duplicates"]
    return out


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two bool flag vectors (1: perfect agreement, 0: chance); NaN if undefined."""
    po = float((a == b).mean())
    pe = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2,000 images, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats = 2000, 1
    torch.set_num_threads(min(2, torch.get_num_threads()))
    threads = torch.get_num_threads()
    x = load(args.n)
    times: dict[str, list[float]] = {"stresslab": [], "cleanvision": []}
    ours = theirs = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = stresslab_flags(x)
        times["stresslab"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = cleanvision_flags(x, n_jobs=threads)
        times["cleanvision"].append(time.perf_counter() - t0)
    assert ours is not None and theirs is not None
    t_ours, t_theirs = statistics.median(times["stresslab"]), statistics.median(times["cleanvision"])
    print(f"{args.n} images {tuple(x.shape[1:])}, {threads} threads, median of {args.repeats}")
    print(f"stresslab {t_ours:.2f} s   CleanVision {t_theirs:.2f} s   ratio {t_theirs / t_ours:.1f}x")
    print(f"{'flag':<18} {'stresslab':>9} {'CleanVision':>11} {'both':>6} {'kappa':>7}")
    for k in ISSUES:
        a, b = ours[k], theirs[k]
        print(f"{k:<18} {int(a.sum()):>9} {int(b.sum()):>11} {int((a & b).sum()):>6} {kappa(a, b):>7.3f}")


if __name__ == "__main__":
    main()
