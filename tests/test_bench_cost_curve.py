"""The cost-curve benchmark's arithmetic: the growth exponent and the interval half-widths."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cost_curve.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_cost_curve", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_exponent_is_the_log_log_slope_with_its_local_range(bench) -> None:  # type: ignore[no-untyped-def]
    # t = 3 n^2 exactly: every slope is 2.
    slope, lo, hi = bench.fit([1.0, 2.0, 4.0], [3.0, 12.0, 48.0])
    assert slope == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    # Flat then linear: local slopes 0 and 1; least squares agrees with numpy's polyfit.
    xs, ys = [1000.0, 2000.0, 4000.0], [5.0, 5.0, 10.0]
    slope, lo, hi = bench.fit(xs, ys)
    assert (lo, hi) == pytest.approx((0.0, 1.0))
    assert slope == pytest.approx(np.polyfit(np.log(xs), np.log(ys), 1)[0])
    assert all(math.isnan(v) for v in bench.fit([1.0], [1.0]))


def test_auroc_half_width_is_hanley_and_mcneil_by_hand(bench) -> None:  # type: ignore[no-untyped-def]
    # A = 0.8, 50 and 50: Q1 = 0.8/1.2 = 0.6667, Q2 = 1.28/1.8 = 0.7111;
    # var = (0.16 + 49 * 0.02667 + 49 * 0.07111) / 2500 = 0.0019805; SE = 0.044503.
    assert bench.hanley_mcneil_half_width(0.8, 50, 50) == pytest.approx(1.96 * 0.044503, rel=1e-4)
    # More scores, a narrower interval; a perfect AUROC has none.
    assert bench.hanley_mcneil_half_width(0.8, 500, 500) < bench.hanley_mcneil_half_width(0.8, 50, 50)
    assert bench.hanley_mcneil_half_width(1.0, 50, 50) == pytest.approx(0.0, abs=1e-12)


def test_wilson_half_width_by_hand(bench) -> None:  # type: ignore[no-untyped-def]
    # p = 0.5, n = 100, z = 1.96: half = z sqrt(0.25/100 + z^2/40000) / (1 + z^2/100) = 0.09617.
    assert bench.wilson_half_width(0.5, 100) == pytest.approx(0.09617, abs=1e-5)


def test_markdown_table_has_every_cell_and_marks_partial_fits(bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    probes = bench.PROBES
    rows = []
    columns = [("images", "1000", 1000.0), ("images", "2000", 2000.0), ("images", "4000", 4000.0)]
    for axis, label, x in [*columns, ("models", "timm:vit_s", 0.0)]:
        for p in probes:
            # 2 s per 1,000 images; explain not measured at 4,000 images, ood only at 1,000.
            missing = (p == "explain" and x == 4000) or (p == "ood" and x > 1000)
            seconds = math.nan if missing else 2.0 * x / 1000 if x else 1234.5
            cfg = {"axis": axis, "label": label, "x": x, "model": "fast_cnn", "px": 28, "images": int(x)}
            rows.append({**cfg, "probe": p, "wall_s": math.nan, "cpu_s": seconds})
    fits = bench.write_fits(rows, tmp_path, "cpu_s")
    bench.write_markdown(rows, fits, tmp_path, "cpu_s")
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0] == "| probe | 1,000 images | 2,000 images | 4,000 images | exponent in images | vit_s |"
    assert len(lines) == 2 + len(probes)
    by_probe = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert by_probe["evaluation"] == "| evaluation | 2.00 | 4.00 | 8.00 | 1.00 | 1,234 |"
    # A fit on part of the axis names its sizes; one point cannot be fitted.
    assert by_probe["explain"] == "| explain | 2.00 | 4.00 | - | 1.00 (1000-2000) | 1,234 |"
    assert by_probe["ood"] == "| ood | 2.00 | - | - | - | 1,234 |"
    # The joined cells round-trip through times.csv, an unmeasured cell left empty.
    bench.write_rows(rows, tmp_path / "times.csv")
    back = bench.read_times([tmp_path / "times.csv"])
    assert len(back) == len(rows)
    missing = next(r for r in back if r["probe"] == "explain" and r["label"] == "4000")
    assert math.isnan(missing["cpu_s"])
    assert (tmp_path / "times.csv").read_text().count(",explain,") == 4
