"""Run every side-by-side benchmark, one process each, and print their reports.

    .venv/bin/python benchmarks/run_all.py           # quick sizes: about 6 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --full    # the default sizes of each benchmark

Peers are installed with ``pip install -e '.[bench]'`` (``make bench`` does it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_train.py",
    "bench_time_to_accuracy.py",
    "bench_explain.py",
    "bench_attacks.py",
    "bench_corruptions.py",
    "bench_representation.py",
    "bench_ood.py",
    "bench_data_audit.py",
    "bench_api.py",
    "bench_planted_faults.py",
    "bench_shards.py",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="default sizes instead of --quick")
    ap.add_argument("--only", nargs="*", default=None, help="benchmark file names to run")
    args = ap.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        cmd = [sys.executable, str(HERE / name)] + ([] if args.full else ["--quick"])
        sys.stdout.write(f"\n=== {' '.join(cmd[1:])}\n")
        sys.stdout.flush()
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    if failed:
        sys.stderr.write(f"failed: {', '.join(failed)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
