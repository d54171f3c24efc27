"""Study overhead and local parallelism.

1. Overhead: everything a study does besides its runs (validation, scheduling, reading the
   runs back, statistics, figures, Grad-CAM, the report) as a share of the study's wall
   time, with the runs executed one after another in this process. Target: < 5%.
2. ``--workers 2`` against sequential: the same study's wall time both ways (each of the
   two worker processes gets half the cores as torch threads).

The study is a small one on Fashion-MNIST (Debian's files when installed, else generated
IDX files): ``custom_cnn``, a baseline and an augmented arm, two seeds, the evaluation and
calibration probes.

    .venv/bin/python benchmarks/bench_study.py                        # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_study.py --train-subset 12000 --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stresslab.study import parse_study, run_study
from stresslab.study.plan import cpu_count

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def study(root: str | None, args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"dataset": "fashion_mnist", "train_subset": args.train_subset,
                            "test_subset": args.test_subset}  # fmt: skip
    if root:
        data["root"] = root
    return {
        "name": "bench",
        "base": {
            "data": data,
            "model": {"name": "custom_cnn"},
            "train": {"epochs": args.epochs, "batch_size": 128},
            "probes": {"evaluation": {}, "calibration": {}},
        },
        "seeds": list(range(args.seeds)),
        "arms": {"baseline": {}, "augment": {"train.augment.hflip": True, "train.augment.rotation_deg": 10}},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-subset", type=int, default=3000)
    ap.add_argument("--test-subset", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = None
        if not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.data_factories import write_fashion_mnist

            root = str(Path(tmp) / "fmnist")
            write_fashion_mnist(Path(root), n_train=args.train_subset + 1000, n_test=args.test_subset)
        spec = parse_study(study(root, args), source="bench")
        n_runs = len(spec.arms) * len(spec.seeds)

        t0 = time.perf_counter()
        seq = run_study(spec, out=Path(tmp) / "sequential")
        seq_wall = time.perf_counter() - t0
        overhead = seq_wall - seq.seconds["in_runs"]

        t0 = time.perf_counter()
        run_study(spec, out=Path(tmp) / "workers2", workers=2)
        par_wall = time.perf_counter() - t0

    print(f"study: {n_runs} runs ({len(spec.arms)} arms x {len(spec.seeds)} seeds), custom_cnn, "
          f"{args.train_subset} training images, {args.epochs} epochs, {cpu_count()} CPUs")  # fmt: skip
    print(f"sequential: wall {seq_wall:.1f} s, inside the runs {seq.seconds['in_runs']:.1f} s, "
          f"study report {seq.seconds.get('report', 0.0):.1f} s")  # fmt: skip
    print(f"study overhead: {overhead:.2f} s = {overhead / seq_wall:.1%} of wall time (target < 5%)")
    print(f"--workers 2: wall {par_wall:.1f} s; sequential / workers-2 = {seq_wall / par_wall:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
