"""Planted faults: does the diagnosis give each failure the cause that was planted?

A copy of Fashion-MNIST (the Debian IDX files) is written as an ``.npz`` the ``npz`` loader
reads, with four kinds of faults planted in disjoint test images (their positions kept), in
several variants each with ``--planting wide`` (the default; ``classic``: the first variant
of each, at the earlier fixed strengths):

- ``label_error``: ``--n-each`` test images, half given a uniformly random other label,
  half one fixed other label per class (a systematic swap);
- ``image_quality``: ``--n-each`` test images damaged, :data:`DAMAGE` in equal shares,
  strengths drawn per image (see :func:`_damage`);
- ``out_of_distribution``: ``--n-each`` test images replaced by images that belong to none
  of the classes, :data:`FOREIGN` in equal shares (handwritten digits, scikit-learn's
  ``load_digits`` 8x8 upscaled to 28x28; crops of its sample photographs; synthetic
  textures), with random labels;
- ``shortcut``: a 4x4 white square (rows 0-3, columns 0-3) on ``--pattern-share`` (80%) of
  the training images of ``--pattern-class`` (Bag); ``--n-each`` test images of other
  classes get the same square.

stresslab then trains the default model with the default recipe (``fast_cnn``, 8 epochs;
``--quick``: 12,000 training images and 3 epochs) and runs the probes the evidence needs.
For each planted kind it reports, over the planted images the model gets wrong: recall (the
share diagnosed with that cause) and precision (the share of failures diagnosed with that
cause that were planted with it), and what the diagnosis cost against the run's wall time.

    .venv/bin/python benchmarks/bench_diagnosis.py --quick
    .venv/bin/python benchmarks/bench_diagnosis.py
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stresslab.data import DATASETS
from stresslab.probes.base import PROBES
from stresslab.runs import config as config_mod
from stresslab.runs.execute import execute

ROOT = Path("/usr/share/datasets/fashion-mnist")
KINDS = ("label_error", "image_quality", "out_of_distribution", "shortcut")


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of uint8 (N, 1, H, W) images, reflect padding."""
    r = int(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    t = torch.from_numpy(x.astype(np.float32))
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return np.clip(np.rint(t.numpy()), 0, 255).astype(np.uint8)


def _digits(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import load_digits

    d = load_digits().images[rng.choice(1797, n, replace=False)]
    t = torch.from_numpy(d.astype(np.float32) / 16.0)[:, None]
    up = F.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False)
    return np.clip(np.rint(up.numpy() * 255), 0, 255).astype(np.uint8)


def _photo_crops(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gray 28x28 crops (random place, 40-120 pixels on a side, redrawn until the crop has
    some structure: pixel standard deviation at least 0.1) of scikit-learn's two sample
    photographs (a building, a flower): natural images that belong to none of the classes."""
    from sklearn.datasets import load_sample_images

    photos = [
        torch.from_numpy(p.astype(np.float32).mean(axis=2) / 255.0) for p in load_sample_images().images
    ]
    out = np.empty((n, 1, 28, 28), dtype=np.uint8)
    for i in range(n):
        crop = torch.zeros(1, 1, 2, 2)
        while float(crop.std()) < 0.1:
            p = photos[int(rng.integers(len(photos)))]
            s = int(rng.integers(40, 121))
            top, left = int(rng.integers(p.shape[0] - s)), int(rng.integers(p.shape[1] - s))
            crop = p[top : top + s, left : left + s][None, None]
        up = F.interpolate(crop, size=(28, 28), mode="area")
        out[i] = np.clip(np.rint(up.numpy()[0] * 255), 0, 255).astype(np.uint8)
    return out


def _textures(n: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic 28x28 textures that belong to none of the classes, alternating: a sinusoidal
    grating (random period 3-10 pixels, angle and phase), a checkerboard (random square
    2-7 pixels) and smoothed random noise (Gaussian, sigma 1-3 pixels)."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.empty((n, 1, 28, 28), dtype=np.uint8)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            a, period, phase = rng.uniform(0, np.pi), rng.uniform(3, 10), rng.uniform(0, 2 * np.pi)
            img = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period + phase)
        elif kind == 1:
            sq = int(rng.integers(2, 8))
            img = ((yy // sq + xx // sq) % 2).astype(np.float32)
        else:
            z = rng.random((1, 1, 28, 28)).astype(np.float32) * 255
            img = _blur(z.astype(np.uint8), float(rng.uniform(1, 3)))[0, 0] / 255.0
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        out[i, 0] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return out


def _damage(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One kind of damage, its strength drawn per call from a range, on uint8 (N, 1, 28, 28)."""
    f = x.astype(np.float32)
    if kind == "dark":  # brightness scaled to 8-25%
        f = f * rng.uniform(0.08, 0.25)
    elif kind == "blur":  # Gaussian, sigma 2-3.5 pixels
        return _blur(x, float(rng.uniform(2.0, 3.5)))
    elif kind == "low_contrast":  # contrast flattened to 8-25% around mid-gray
        f = 128 + (f - 128) * rng.uniform(0.08, 0.25)
    elif kind == "noise":  # additive Gaussian, std 0.2-0.4 of the range
        f = f + rng.normal(0, 255 * rng.uniform(0.2, 0.4), f.shape)
    elif kind == "occlusion":  # a gray box, 10-14 pixels on a side, anywhere over the middle
        for j in range(len(f)):
            s = int(rng.integers(10, 15))
            top, left = int(rng.integers(4, 24 - s + 1)), int(rng.integers(4, 24 - s + 1))
            f[j, :, top : top + s, left : left + s] = rng.uniform(80, 180)
    elif kind == "wash_out":  # contrast cut to 25-45% towards white
        f = 255 - (255 - f) * rng.uniform(0.25, 0.45)
    elif kind == "blocky":  # averaged over 4x4 blocks (7x7 effective resolution)
        t = torch.from_numpy(f)
        f = F.interpolate(F.avg_pool2d(t, 4), scale_factor=4, mode="nearest").numpy()
    else:
        raise ValueError(f"unknown damage {kind!r}")
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


#: The damage and the sources of images of no class ``--planting wide`` spreads its
#: ``--n-each`` images over (``classic``: the first three and the digits only).
DAMAGE = ("dark", "blur", "low_contrast", "noise", "occlusion", "wash_out", "blocky")
FOREIGN = ("digits", "photo_crops", "textures")


def plant(args: argparse.Namespace, out: Path) -> tuple[dict[str, list[int]], dict[int, str]]:
    """Write the planted copy to ``out``; return the planted test positions per kind and the
    variant (damage, source of images of no class, label-noise pattern) of each."""
    raw = DATASETS.get("fashion_mnist")(ROOT)
    rng = np.random.default_rng(args.seed)
    xtr, ytr = raw.train_x.numpy().copy(), raw.train_y.numpy().copy()
    xte, yte = raw.test_x.numpy().copy(), raw.test_y.numpy().copy()
    k = len(raw.class_names)
    own = np.flatnonzero(ytr == args.pattern_class)
    xtr[rng.choice(own, round(args.pattern_share * len(own)), replace=False), :, 0:4, 0:4] = 255
    order = rng.permutation(np.flatnonzero(yte != args.pattern_class))
    n = args.n_each
    planted = {kind: np.sort(order[i * n : (i + 1) * n]) for i, kind in enumerate(KINDS)}
    if args.planting == "classic":
        variant = _plant_classic(planted, xte, yte, k, rng)
    else:
        variant = _plant_wide(planted, xte, yte, k, rng)
    xte[planted["shortcut"], :, 0:4, 0:4] = 255
    variant.update({int(i): "white_square" for i in planted["shortcut"]})
    np.savez(out, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, class_names=np.array(raw.class_names))
    return {kind: v.tolist() for kind, v in planted.items()}, variant


def _plant_classic(
    planted: dict[str, np.ndarray], xte: np.ndarray, yte: np.ndarray, k: int, rng: np.random.Generator
) -> dict[int, str]:
    """Random other labels; darkened to 15%, blurred (sigma 2.5), 15% contrast; digits."""
    p = planted["label_error"]
    yte[p] = (yte[p] + rng.integers(1, k, len(p))) % k
    q = planted["image_quality"]
    thirds = np.array_split(q, 3)
    xte[thirds[0]] = np.rint(xte[thirds[0]] * 0.15).astype(np.uint8)
    xte[thirds[1]] = _blur(xte[thirds[1]], 2.5)
    xte[thirds[2]] = np.rint(128 + (xte[thirds[2]].astype(np.float32) - 128) * 0.15).astype(np.uint8)
    o = planted["out_of_distribution"]
    xte[o] = _digits(len(o), rng)
    yte[o] = rng.integers(0, k, len(o))
    variant = {int(i): "random_label" for i in p}
    for name, part in zip(("dark", "blur", "low_contrast"), thirds, strict=True):
        variant.update({int(i): name for i in part})
    variant.update({int(i): "digits" for i in o})
    return variant


def _plant_wide(
    planted: dict[str, np.ndarray], xte: np.ndarray, yte: np.ndarray, k: int, rng: np.random.Generator
) -> dict[int, str]:
    """Label errors: half a random other class, half one fixed other class per class (a
    systematic swap, as annotators confuse classes); damage: the :data:`DAMAGE` kinds in
    equal shares, strengths drawn per image; no class: the :data:`FOREIGN` sources in equal
    shares, random labels."""
    p = rng.permutation(planted["label_error"])
    half = len(p) // 2
    yte[p[:half]] = (yte[p[:half]] + rng.integers(1, k, half)) % k
    swap = (np.arange(k) + rng.integers(1, k, k)) % k  # each class's one wrong label
    yte[p[half:]] = swap[yte[p[half:]]]
    variant = {int(i): "random_label" for i in p[:half]} | {int(i): "swapped_label" for i in p[half:]}
    for kind, part in zip(
        DAMAGE, np.array_split(rng.permutation(planted["image_quality"]), len(DAMAGE)), strict=True
    ):
        for j in part:  # strength drawn per image
            xte[j : j + 1] = _damage(xte[j : j + 1], kind, rng)
            variant[int(j)] = kind
    sources = {"digits": _digits, "photo_crops": _photo_crops, "textures": _textures}
    for name, part in zip(
        FOREIGN, np.array_split(rng.permutation(planted["out_of_distribution"]), len(FOREIGN)), strict=True
    ):
        xte[part] = sources[name](len(part), rng)
        yte[part] = rng.integers(0, k, len(part))
        variant.update({int(i): name for i in part})
    return variant


def score(rows: list[dict[str, str]], planted: dict[str, list[int]]) -> list[dict[str, float]]:
    """Precision and recall of ``cause`` per planted kind, over the failures."""
    kind_of = {i: kind for kind, ix in planted.items() for i in ix}
    out = []
    for kind in KINDS:
        failed = [r for r in rows if kind_of.get(int(r["index"])) == kind]
        said = [r for r in rows if r["cause"] == kind]
        hit = sum(r["cause"] == kind for r in failed)
        right = sum(kind_of.get(int(r["index"])) == kind for r in said)
        out.append(
            {
                "kind": kind,
                "planted": len(planted[kind]),
                "misclassified": len(failed),
                "diagnosed": len(said),
                "recall": hit / len(failed) if failed else float("nan"),
                "precision": right / len(said) if said else float("nan"),
            }
        )
    return out


def rediagnose(run_dir: Path, planted: Path) -> Path:
    """Diagnose a finished run again from its saved records (the rules as they are now; no
    embeddings, so no weak slices); returns the rewritten ``diagnosis.csv``. Stops when the
    run's test images are not the copy ``planted`` (planted with other flags)."""
    from stresslab.diagnosis import TestSet, diagnose, write_csv
    from stresslab.runs.directory import RunDir
    from stresslab.runs.prepare import load_data
    from stresslab.runs.saved_predictions import load_predictions
    from stresslab.runs.storage import load_results

    run = RunDir.open(run_dir)
    split = load_data(config_mod.resolve(run.config))
    sp = load_predictions(run.predictions)
    if not np.array_equal(np.load(planted)["x_test"][sp.index], split.test_x.numpy()):
        raise SystemExit(f"{run_dir} was not planted with these flags (--planting, --seed, --n-each)")
    test = TestSet(
        sp.probs,
        sp.labels,
        sp.index,
        sp.class_names,
        images=split.test_x.numpy(),
        train_images=split.train_x.numpy(),
        train_labels=split.train_y.numpy(),
        background=split.info.background,
    )
    t0 = time.perf_counter()
    d = diagnose({k: v for k, v in load_results(run).items() if k != "diagnosis"}, test)
    print(f"diagnosed again in {time.perf_counter() - t0:.2f} s; evidence from {d.sources}")
    write_csv(run.diagnosis, d.rows)
    return run.diagnosis


def by_variant(rows: list[dict[str, str]], variant: dict[int, str]) -> dict[str, Counter[str]]:
    """Per planted variant, how many of its failures got each cause."""
    out: dict[str, Counter[str]] = {}
    for r in rows:
        v = variant.get(int(r["index"]))
        if v is not None:
            out.setdefault(v, Counter())[r["cause"]] += 1
    return out


def _report(path: Path, planted: dict[str, list[int]], variant: dict[int, str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    unplanted = Counter(r["cause"] for r in rows if int(r["index"]) not in variant)
    print(f"failures {len(rows)}; causes of the unplanted ones: {dict(unplanted.most_common())}")
    for v, c in sorted(by_variant(rows, variant).items()):
        print(f"  {v}: {sum(c.values())} failures -> {dict(c.most_common())}")
    print("| planted kind | planted | misclassified | diagnosed as it | recall | precision |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in score(rows, planted):
        print(
            f"| {s['kind']} | {s['planted']} | {s['misclassified']} | {s['diagnosed']} | "
            f"{s['recall']:.2f} | {s['precision']:.2f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="12,000 training images, 3 epochs")
    ap.add_argument("--n-each", type=int, default=200, help="test images planted per kind")
    ap.add_argument("--pattern-class", type=int, default=8, help="class given the shortcut square (8: Bag)")
    ap.add_argument("--pattern-share", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--planting",
        choices=("wide", "classic"),
        default="wide",
        help="wide: seven kinds of damage, three sources of images of no class, two label-noise patterns",
    )
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    ap.add_argument(
        "--rescore", type=Path, default=None, help="diagnose this finished run again and score it"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_diagnosis_"))
    planted, variant = plant(args, tmp / "planted.npz")
    if args.rescore is not None:  # the copy planted again is only compared with the run's
        try:
            _report(rediagnose(args.rescore, tmp / "planted.npz"), planted, variant)
        finally:
            shutil.rmtree(tmp)
        return
    probes = ["evaluation", "failures", "label_issues", "representation", "shortcut"]
    probes += [p for p in ("ood", "data_audit") if p in PROBES.names()]
    over: dict[str, object] = {"data.dataset": "npz", "data.root": str(tmp / "planted.npz"), "probes": probes}
    if args.quick:
        over.update({"data.train_subset": 12000, "train.epochs": 3})
    cfg = config_mod.resolve(None, overrides=over)
    t0 = time.perf_counter()
    outcome = execute(cfg, out=args.out or tmp / "run", show_progress=False)
    wall = time.perf_counter() - t0
    run = outcome.run_dir
    _report(run.diagnosis, planted, variant)
    diag_seconds = json.loads(run.result_json("diagnosis").read_text())["seconds"]
    accuracy = outcome.metrics.get("evaluation.accuracy", float("nan"))
    print(f"probes: {', '.join(probes)}; test accuracy {accuracy:.4f}")
    share = 100 * diag_seconds / wall
    print(f"diagnosis: {diag_seconds:.2f} s of a {wall:.0f} s run ({share:.1f}%); run: {run.path}")


if __name__ == "__main__":
    main()
