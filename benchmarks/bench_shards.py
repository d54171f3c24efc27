"""Per-image work in one process against shards on a local Ray instance with 2 workers.

``fast_cnn`` (random init: the time does not depend on the weights) on Fashion-MNIST test
images; the work timed is what shards: predictions over the test images, the corruption
probe (15 corruptions at severity 3) and the adversarial probe (FGSM and PGD L-inf). Each
setting runs once untimed-for-the-median first (reported apart as ``first_s``: on Ray it
pays the workers' start-up, importing torch and stresslab and rebuilding the model), then
``--repeats`` times, whose median is reported, with whether every metric equals the
one-process run with the same threads per worker.

    .venv/bin/python benchmarks/bench_shards.py --quick
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import time
from typing import Any

import matplotlib.pyplot as plt
import torch

from stresslab.data.split import load_split
from stresslab.models.factory import build_model
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.predictions import Predictions
from stresslab.shards import LocalShards, RayShards, ShardExecutor, python_path

log = logging.getLogger("bench_shards")


def timed_work(
    model: torch.nn.Module, split: Any, shards: ShardExecutor, images: int
) -> tuple[float, dict[str, float]]:
    """Seconds for predictions + corruption + adversarial in ``shards``, and their metrics."""
    t0 = time.perf_counter()
    bs = 256
    preds = Predictions.compute(
        model, split.test_x, split.test_y, split.test_index, batch_size=bs, shards=shards
    )
    ctx = ProbeContext(model, split, torch.device("cpu"), 0, bs, preds, preds, shards=shards)
    corruption = build_probe("corruption", {"severities": [3], "max_images": images, "resolution": None})
    adversarial = build_probe(
        "adversarial", {"max_images": images, "attacks": {"fgsm_linf": {}, "pgd_linf": {"steps": 5}}}
    )
    metrics = {f"corruption.{k}": v for k, v in corruption.run(ctx).metrics.items()}
    metrics.update({f"adversarial.{k}": v for k, v in adversarial.run(ctx).metrics.items()})
    metrics["predictions.sum"] = float(preds.logits.double().sum())
    seconds = time.perf_counter() - t0
    plt.close("all")  # the probes' figures are not needed here
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 test images, 500 probed, 2 repeats after the first run"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-two-threads",
        action="store_true",
        help="leave out one process with 2 threads (the reference, 1 thread, always runs)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_test, images, repeats = (1000, 500, 2) if args.quick else (4000, 1000, args.repeats)
    split = load_split("fashion_mnist", train_subset=100, test_subset=n_test)
    torch.manual_seed(0)
    model = build_model("fast_cnn", split.info).eval()
    factory = functools.partial(build_model, "fast_cnn", split.info)

    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": python_path()}},
    )
    settings: dict[str, tuple[int, ShardExecutor]] = {
        "one process, 1 thread": (1, LocalShards()),
        "one process, 2 threads": (2, LocalShards()),
        "Ray, 2 workers x 1 thread": (1, RayShards(factory, threads=1, shards=2)),
    }
    if args.no_two_threads:
        del settings["one process, 2 threads"]
    out: dict[str, Any] = {"test_images": n_test, "probed_images": images}
    reference: dict[str, float] = {}
    for name, (threads, shards) in settings.items():
        torch.set_num_threads(threads)
        first, metrics = timed_work(model, split, shards, images)
        times, equal = [], []
        for _ in range(repeats):
            seconds, again = timed_work(model, split, shards, images)
            times.append(seconds)
            equal.append(again == metrics)
        if name == "one process, 1 thread":
            reference = metrics
        same = metrics == reference and all(equal)
        out[name] = {
            "first_s": first,
            "median_s": statistics.median(times),
            "runs_s": times,
            "metrics_equal_1_thread": same,
        }
        runs = [round(t, 1) for t in times]
        print(f"{name:28s} first {first:6.1f} s  median {statistics.median(times):6.1f} s  "
              f"runs {runs}  metrics equal to 1 thread in one process: {same}")  # fmt: skip
    ray.shutdown()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
