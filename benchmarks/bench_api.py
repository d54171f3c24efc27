"""``stresslab.probe`` on a model in memory against the same work through the command line.

A small ``custom_cnn`` is trained for one epoch on 2,000 Fashion-MNIST images and saved as
a state dict. Then, alternately, each in a fresh process:

- the command: ``stresslab run --preset quick --checkpoint model.pt --set data.test_subset=N``
  (data loaded by stresslab's loader, the quick probes, the report);
- the API: the same split loaded with ``stresslab.data.load_split``, the model built and its
  weights loaded in memory, then ``stresslab.probe(model, test=..., train=..., val=...,
  probes="quick")``.

Both write a run directory; their ``metrics.json`` must be identical (the same work). The
figures are each process's wall time (interpreter start to exit), the API's time inside
``probe()``, and each process's peak resident memory (``ru_maxrss`` from ``wait4``).
Target: the API within 5% of the command's time.

    .venv/bin/python benchmarks/bench_api.py             # 10,000 test images: ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_api.py --quick     # 2,000 test images
    .venv/bin/python benchmarks/bench_api.py --n 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = {"widths": [16, 32], "fc": 64}
QUICK = ["--preset", "quick", "--set", f"model.args={json.dumps(ARGS)}"]


def measured(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` in a child and wait for it with ``wait4``: wall and CPU seconds (user + system,
    less sensitive than wall time to other work on the machine) and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    record = {"wall_s": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        record.update(json.loads(lines[-1]))
    return record


def train_model(work: Path) -> Path:
    """One epoch of custom_cnn on 2,000 images, saved as a plain state dict."""
    import torch

    import stresslab

    run = stresslab.run(
        preset="quick",
        overrides={
            "model.args": ARGS,
            "data.train_subset": 2000,
            "data.test_subset": 500,
            "train.epochs": 1,
            "probes": ["evaluation"],
        },
        out=work / "train",
    )
    state = torch.load(run.path / "checkpoints" / "best.pt", weights_only=True)["state_dict"]
    path = work / "model.pt"
    torch.save(state, path)
    return path


def api_worker(checkpoint: str, n: int, out: str) -> None:
    """The API side, in its own process: load the data, build the model, probe it."""
    import torch

    import stresslab
    from stresslab.data import load_split
    from stresslab.models import build_model
    from stresslab.runs.config import PRESETS

    data = PRESETS["quick"]["data"]
    split = load_split("fashion_mnist", train_subset=data["train_subset"], test_subset=n)
    model = build_model("custom_cnn", split.info, ARGS)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    t0 = time.perf_counter()
    stresslab.probe(
        model.eval(),
        test=(split.test_x, split.test_y),
        train=(split.train_x, split.train_y),
        val=(split.val_x, split.val_y),
        class_names=split.info.class_names,
        background=split.info.background,
        probes="quick",
        out=out,
    )
    sys.stdout.write(json.dumps({"probe_s": time.perf_counter() - t0}) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="test images (10,000: the whole test set)")
    ap.add_argument("--quick", action="store_true", help="2,000 test images")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--worker", nargs=3, metavar=("CHECKPOINT", "N", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        api_worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return 0
    n = 2000 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        checkpoint = train_model(work)
        cli_runs, api_runs = [], []
        for i in range(args.repeats):
            cli_out, api_out = work / f"cli{i}", work / f"api{i}"
            cli = [sys.executable, "-m", "stresslab.cli", "run", "--quiet", *QUICK]
            cli += ["--checkpoint", str(checkpoint), "--set", f"data.test_subset={n}", "--out", str(cli_out)]
            cli_runs.append(measured(cli))
            api = [sys.executable, __file__, "--worker", str(checkpoint), str(n), str(api_out)]
            api_runs.append(measured(api))
            same = json.loads((cli_out / "metrics.json").read_text()) == json.loads(
                (api_out / "metrics.json").read_text()
            )
            if not same:
                sys.stderr.write("the two runs' metrics.json differ: not the same work\n")
                return 1
    cli_s = statistics.median(r["wall_s"] for r in cli_runs)
    api_s = statistics.median(r["wall_s"] for r in api_runs)
    probe_s = statistics.median(r["probe_s"] for r in api_runs)
    ratio = api_s / cli_s
    print(f"stresslab.probe vs `stresslab run --checkpoint`, quick probes, {n} Fashion-MNIST test images")
    print(f"{os.cpu_count()} CPU cores, {args.repeats} repeat(s), medians; both metrics.json identical")
    cli_cpu = statistics.median(r["cpu_s"] for r in cli_runs)
    api_cpu = statistics.median(r["cpu_s"] for r in api_runs)
    cli_mib = statistics.median(r["peak_mib"] for r in cli_runs)
    api_mib = statistics.median(r["peak_mib"] for r in api_runs)
    print(f"  command: {cli_s:7.1f} s wall, {cli_cpu:7.1f} s CPU, peak RSS {cli_mib:6.0f} MiB")
    print(f"  API:     {api_s:7.1f} s wall, {api_cpu:7.1f} s CPU, peak RSS {api_mib:6.0f} MiB")
    print(f"           ({probe_s:.1f} s wall inside probe())")
    verdict = "met" if ratio <= 1.05 else "NOT met"
    print(f"  API / command: wall {ratio:.3f} (target <= 1.05: {verdict}), CPU {api_cpu / cli_cpu:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
