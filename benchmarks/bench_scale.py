"""Larger than memory: the default probes on generated image folders of growing size.

Generates (once, cached under ``/tmp/stresslab_scale``) image folders of RGB 96-px PNGs:
a small ``train/`` (``--train-per-class`` images per class, 10 classes) and a ``test/`` of
N images, written by a process pool. Each size then runs as ``stresslab.run`` in a child
process (``fast_cnn``, ``--epochs`` on the small training set, the default probes) with
``data.cache: always`` (the on-disk uint8 cache, read as a memory map) and, for sizes up to
``--compare-up-to``, ``data.cache: never`` (everything decoded into memory, as before).

Measured per run: peak RSS (the kernel's VmHWM, and the peaks of its anonymous and
file-backed parts sampled every 0.1 s from /proc/self/status: file-backed pages of the
memory-mapped cache count in RSS but are dropped by the kernel under pressure, anonymous
pages are what the process really holds), wall time of loading the data and of each probe
(from ``results/<probe>.json``), and whether metrics.json is identical between the cached
and the in-memory run of the same size. Per probe, as soon as it ends, a line of
``<work>/<run>.probes.jsonl``: its wall time and its own peak RSS (VmHWM reset through
``/proc/self/clear_refs`` when it starts) with the sampled anonymous and file-backed peaks,
and a ``(before <probe>)`` line with the peak since the previous probe (loading, training
and predicting before the first): a run stopped half-way still says how far it got.

    .venv/bin/python benchmarks/bench_scale.py --sizes 100000              # the README figures
    .venv/bin/python benchmarks/bench_scale.py --sizes 5000 20000 --compare-up-to 5000
    .venv/bin/python benchmarks/bench_scale.py --sizes 2000 --epochs 1 --probes evaluation  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path("/tmp/stresslab_scale")
CLASSES = 10
SIZE = 96


def _write_images(job: tuple[Path, int, int, int]) -> None:
    """Write ``count`` images of class ``cls`` into ``folder``: a bright square whose place
    depends on the class, over a smooth random gradient (compresses well, fast to write)."""
    from PIL import Image

    folder, cls, count, seed = job
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    for i in range(count):
        colour = rng.uniform(20, 120, size=3).astype(np.float32)
        img = (ramp[None, :, None] * colour + ramp[:, None, None] * colour[::-1]) / 2
        r, c = divmod(cls, 4)
        top, left = 8 + r * 28 + int(rng.integers(0, 6)), 8 + c * 20 + int(rng.integers(0, 6))
        img[top : top + 16, left : left + 16] = rng.uniform(180, 255, size=3)
        Image.fromarray(img.astype(np.uint8), "RGB").save(folder / f"{i:06d}.png", compress_level=1)


def generate(n_test: int, train_per_class: int) -> Path:
    """The folder for ``n_test`` test images, generated once (a marker file says it is whole)."""
    root = ROOT / f"test{n_test}_train{train_per_class}"
    if (root / ".complete").exists():
        return root
    t0 = time.perf_counter()
    jobs: list[tuple[Path, int, int, int]] = []
    per_class = n_test // CLASSES
    step = 500  # files per job, so both processes stay busy
    for cls in range(CLASSES):
        jobs.append((root / "train" / f"c{cls}", cls, train_per_class, 10_000 + cls))
        for start in range(0, per_class, step):
            sub = root / "test" / f"c{cls}" / f"part{start // step:04d}"
            jobs.append((sub, cls, min(step, per_class - start), cls * 1_000_003 + start))
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_images, jobs)
    (root / ".complete").write_text("ok\n")
    print(f"generated {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


class Sampler(threading.Thread):
    """Peaks of RssAnon and RssFile (kB) read from /proc/self/status every 0.1 s, over the
    whole run (``peak``) and since the last :meth:`restart` (``step``)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.step = {"RssAnon": 0, "RssFile": 0}
        self.hwm = 0  # the largest VmHWM seen before a reset (kB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.sample()

    def sample(self) -> None:
        for key, value in _status().items():
            if key in self.peak:
                self.peak[key] = max(self.peak[key], value)
                self.step[key] = max(self.step[key], value)

    def restart(self) -> None:
        """Start a new step: its peaks, and the kernel's VmHWM, start from now."""
        self.step = {"RssAnon": 0, "RssFile": 0}
        self.hwm = max(self.hwm, _status()["VmHWM"])
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.sample()

    def peak_rss(self) -> int:
        """The run's peak RSS (kB): the largest VmHWM over all steps."""
        return max(self.hwm, _status()["VmHWM"])


def per_probe_peaks(sampler: Sampler, log: Path) -> None:
    """Wrap every registered probe's ``run`` so that each probe's wall time and peak RSS (the
    kernel's VmHWM, reset when the probe starts, and the sampled anonymous and file-backed
    peaks) are appended to ``log`` (JSON lines) as soon as it ends: a run stopped half-way
    still tells how far it got."""
    from stresslab.probes.base import PROBES

    def wrap(name: str, run: Any) -> Any:
        def timed(self: Any, ctx: Any) -> Any:
            gap = {"probe": f"(before {name})", "peak_rss_mb": round(_status()["VmHWM"] / 1024)}
            with log.open("a") as f:  # the steps since the last probe: loading, training, predicting
                f.write(json.dumps(gap) + "\n")
            sampler.restart()
            t0 = time.perf_counter()
            try:
                return run(self, ctx)
            finally:
                sampler.sample()
                status = _status()
                record = {
                    "probe": name,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "peak_rss_mb": round(status["VmHWM"] / 1024),
                    "peak_anon_mb": round(sampler.step["RssAnon"] / 1024),
                    "peak_file_mb": round(sampler.step["RssFile"] / 1024),
                }
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")

        return timed

    for name in PROBES.names():
        cls = PROBES.get(name)
        if "run" in vars(cls):
            cls.run = wrap(name, vars(cls)["run"])


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def data_only(args: argparse.Namespace, sampler: Sampler) -> None:
    """The data path alone: load the split, then one batched pass of an untrained
    ``fast_cnn`` over the whole test set (as ``Predictions.compute`` does for every run)."""
    import torch

    from stresslab.data import load_split
    from stresslab.data.cache import CacheSettings
    from stresslab.models.factory import build_model
    from stresslab.probes.predictions import Predictions

    t0 = time.perf_counter()
    split = load_split("image_folder", root=args.root, cache=CacheSettings(args.cache, args.cache_dir))
    loaded = time.perf_counter() - t0
    after_load = _status()
    torch.manual_seed(0)
    model = build_model("fast_cnn", split.info)
    p = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=256)
    sampler.stop.set()
    sampler.join()
    status = _status()
    report = {
        "load_s": round(loaded, 1),
        "predict_s": round(time.perf_counter() - t0 - loaded, 1),
        "n_test": len(split.test_y),
        "anon_after_load_mb": round(after_load["RssAnon"] / 1024),
        "peak_rss_mb": round(status["VmHWM"] / 1024),
        "peak_anon_mb": round(max(sampler.peak["RssAnon"], status["RssAnon"]) / 1024),
        "peak_file_mb": round(max(sampler.peak["RssFile"], status["RssFile"]) / 1024),
        "logit_sum": float(p.logits.double().sum()),
    }
    Path(args.report).write_text(json.dumps(report))


def child(args: argparse.Namespace) -> None:
    """One run in this process; writes the figures to ``args.report``."""
    import stresslab

    sampler = Sampler()
    sampler.start()
    if args.data_only:
        data_only(args, sampler)
        return
    cfg: dict[str, Any] = {
        "name": "scale",
        "device": "cpu",
        "data": {
            "dataset": "image_folder",
            "root": args.root,
            "cache": args.cache,
            "cache_dir": args.cache_dir,
            "val_fraction": 0.1,
        },
        "model": {"name": "fast_cnn"},
        "train": {"epochs": args.epochs, "batch_size": 128},
    }
    if args.probes:
        cfg["probes"] = {p: {} for p in args.probes}
    per_probe_peaks(sampler, Path(args.report).with_suffix(".probes.jsonl"))
    t0 = time.perf_counter()
    run = stresslab.run(cfg, out=args.out)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    out = Path(args.out)
    seconds = {}
    for path in sorted((out / "results").glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "seconds" in record:
            seconds[path.stem] = round(float(record["seconds"]), 1)
    status = _status()
    report = {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(sampler.peak_rss() / 1024),
        "peak_anon_mb": round(max(sampler.peak["RssAnon"], status["RssAnon"]) / 1024),
        "peak_file_mb": round(max(sampler.peak["RssFile"], status["RssFile"]) / 1024),
        "probe_seconds": seconds,
        "metrics": json.loads((out / "metrics.json").read_text()),
        "accuracy": run.metrics.get("evaluation", {}).get("accuracy") if hasattr(run, "metrics") else None,
    }
    Path(args.report).write_text(json.dumps(report))


def measure(root: Path, cache: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One child run; its report. A run of the same name left in ``work`` by an earlier
    call is replaced (only the image cache is kept between calls)."""
    out, report = work / f"{root.name}-{cache}", work / f"{root.name}-{cache}.json"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", "--root", str(root), "--cache", cache,
           "--cache-dir", str(work / "cache"), "--out", str(out), "--report", str(report),
           "--epochs", str(args.epochs), *(["--probes", *args.probes] if args.probes else []),
           *(["--data-only"] if args.data_only else [])]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    result: dict[str, Any] = json.loads(report.read_text())
    result["process_s"] = round(time.perf_counter() - t0, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--compare-up-to", type=int, default=5000, help="also run in memory up to this size")
    parser.add_argument("--probes", nargs="*", default=None, help="default: the default probes")
    parser.add_argument("--data-only", action="store_true", help="only load the data and predict once")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the runs and the image cache, kept (default: a new temporary folder); "
        "a cache already there is reused, not rebuilt",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--root", "--cache", "--cache-dir", "--out", "--report"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"runs and per-probe figures (<run>.probes.jsonl) in {work}", flush=True)
    for n in args.sizes:
        root = generate(n, args.train_per_class)
        modes = ["always", "never"] if n <= args.compare_up_to else ["always"]
        results = {mode: measure(root, mode, args, work) for mode in modes}
        if args.data_only:
            for mode, r in results.items():
                print(f"== {n} test images, data.cache={mode}: {r}")
            continue
        for mode, r in results.items():
            head = f"\n== {n} test images, data.cache={mode}: wall {r['wall_s']} s"
            print(f"{head}, peak RSS {r['peak_rss_mb']} MB (anonymous {r['peak_anon_mb']} MB, "
                  f"file-backed {r['peak_file_mb']} MB)")  # fmt: skip
            print("   seconds per step: " + ", ".join(f"{k} {v}" for k, v in r["probe_seconds"].items()))
            for line in (work / f"{root.name}-{mode}.probes.jsonl").read_text().splitlines():
                print("   " + line)
        if len(results) == 2:
            same = results["always"]["metrics"] == results["never"]["metrics"]
            print(f"   metrics.json identical, cached vs in memory: {same}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
