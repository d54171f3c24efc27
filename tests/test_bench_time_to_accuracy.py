"""The time-to-accuracy benchmark's arithmetic, on made-up epochs."""

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_time_to_accuracy.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_time_to_accuracy", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_first_epoch_reaching_a_target_and_the_seconds_to_it(bench) -> None:  # type: ignore[no-untyped-def]
    o = bench.Outcome("r", 0, test_acc=[0.90, 0.931, 0.929, 0.94], seconds=[10.0, 11.0, 12.0, 13.0])
    assert o.reached(0.930) == (2, 21.0)
    assert o.reached(0.935) == (4, 46.0)
    assert o.reached(0.95) is None
    assert o.epoch_seconds == 11.5


def test_ratios_are_medians_and_a_missed_target_is_said(bench, capsys) -> None:  # type: ignore[no-untyped-def]
    run = bench.Outcome
    runs = [
        # seed 0: baseline reaches 93.0% after 3 x 20 s, ours after 2 x 5 s -> 6x
        run("base", 0, [0.92, 0.925, 0.931], [20.0, 20.0, 20.0], 0.931),
        run("ours", 0, [0.925, 0.932], [5.0, 5.0], 0.932),
        # seed 1: baseline never reaches it (its 60 s are a lower bound), ours after 5 s -> >= 12x
        run("base", 1, [0.92, 0.925, 0.929], [20.0, 20.0, 20.0], 0.929),
        run("ours", 1, [0.932, 0.933], [5.0, 5.0], 0.933),
    ]
    summary = bench.report(runs, ("base", "ours"))
    assert summary["time_to_0.930_ratio"] == pytest.approx(9.0)  # median of 6 and 12
    assert summary["time_to_0.933_ratio"] is None  # ours missed 93.3% with seed 0
    assert summary["epoch_time_ratio"] == pytest.approx(4.0)
    out = capsys.readouterr().out
    assert ">= 9.00x" in out and "did not reach it in 1 of 2 seeds" in out
    assert "mean 93.25%" in out  # ours: (93.2 + 93.3) / 2
