"""The cost curve: each default probe's time as the test set, the image and the model grow.

Every measurement is one ``stresslab.probe`` call with the default probes at their default
settings (the same path as ``stresslab run``: predictions once, the probes in their order,
the diagnosis, the report), in a fresh process; each probe's time is the ``seconds`` the
run records in ``results/<probe>.json``. Three axes:

- **images**: Fashion-MNIST test sets of 250 to 10,000 images (28 px) against ``fast_cnn``
  trained briefly first (3 epochs of the quick recipe), because some probes' costs depend on
  accuracy (the attacks stop early on images already misclassified; the failures and the
  diagnosis grow with the errors). The training set the probes read is fixed.
- **pixels**: the same images upsampled to 28, 64, 128 and 224 px against ``fast_cnn`` with a
  128-wide hidden layer (``fc: 128``, so its features, and the ood probe's covariance, keep
  one size; the default flattened map is 96 x (px / 8)^2 values) at random initialisation.
- **models**: ``fast_cnn``, ``resnet18`` (stresslab's, stride-1 stem) and timm's
  ``vit_small_patch16_224`` (built for the axis's image size) at random initialisation.

The growth exponent of each probe is the least-squares slope of log time against log images
(or log pixels, H x W), with the range of the slopes between neighbouring sizes. A
configuration that runs past ``--timeout`` is stopped; the probes it finished keep their
times, the others are missing. Writes ``times.csv``, ``fits.csv``, ``sample_sizes.csv`` and
``cost_curve.png`` under ``--out``.

Each configuration runs with one torch thread (``--threads``) and its time is the process's
CPU seconds; ``--probes`` measures a part of the default probes in a process, ``--work``
keeps the run folders and ``--collect`` joins the parts measured apart. ``--redraw`` joins
``times.csv`` files (a cell from the first that measured it) and writes the joined
``times.csv``, ``fits.csv``, ``table.md`` (the README's table) and the plot from them alone
(``docs/cost_curve_times.csv`` holds the README's measurement):

    .venv/bin/python benchmarks/bench_cost_curve.py --redraw docs/cost_curve_times.csv --out /tmp/cost

    .venv/bin/python benchmarks/bench_cost_curve.py --quick    # fewer sizes
    .venv/bin/python benchmarks/bench_cost_curve.py            # every size, one repeat
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stresslab.runs.config import DEFAULT_PROBES as PROBES

THREADS: list[str] = []  # ["--threads", N] passed on to each configuration's process
TRAIN_IMAGES = 6000  # the training set every probe reads (and the images axis's model learns)
VAL_IMAGES = 1000  # the validation set calibration reads (stratified out of the official 60,000)


@dataclass(frozen=True)
class Spec:
    """One configuration: ``n`` test images of ``px`` x ``px`` through model ``model``."""

    axis: str
    x: float  # the axis's value: images, pixels (H x W) or the model's position
    label: str
    model: str
    args: dict[str, Any]
    px: int
    n: int
    checkpoint: str | None = None
    probes: tuple[str, ...] = PROBES  # the default probes this process runs, in their order
    train: int = TRAIN_IMAGES  # training images the probes read
    val: int = VAL_IMAGES  # validation images (predicted before the probes, untimed)


def specs(args: argparse.Namespace, checkpoint: str) -> list[Spec]:
    """Every configuration of the three axes the arguments ask for."""
    out = []
    common = {"probes": tuple(args.probes), "train": args.train_images, "val": args.val_images}
    if "images" in args.axes:
        out += [Spec("images", n, f"{n}", "fast_cnn", {}, 28, n, checkpoint, **common) for n in args.images]
    fc = {"fc": 128}
    if "pixels" in args.axes:
        out += [
            Spec("pixels", px * px, f"{px}px", "fast_cnn", fc, px, args.pixel_images, **common)
            for px in args.pixels
        ]
    if "models" not in args.axes:
        return out
    px = args.model_px
    vit = {"img_size": px}
    for i, (name, margs) in enumerate(
        (("fast_cnn", {}), ("resnet18", {}), ("timm:vit_small_patch16_224", vit))
    ):
        if name.split(":")[-1].split("_")[0] in args.models or name in args.models:
            out.append(Spec("models", i, name, name, margs, px, args.model_images, **common))
    return out


def run_dir_name(spec: Spec, rep: int) -> str:
    """The folder of ``spec``'s repeat ``rep``: axis, label, repeat, and the probes when they
    are a part of the default ones (so that parts measured apart can be collected together)."""
    part = "" if tuple(spec.probes) == PROBES else "-" + "+".join(spec.probes)
    return f"{spec.axis}-{spec.label.replace(':', '_')}-{rep}{part}"


def train_checkpoint(work: Path, epochs: int) -> tuple[Path, float]:
    """``fast_cnn`` trained by the quick recipe on the fixed training set: its state dict and
    its test accuracy on 1,000 images."""
    import torch

    import stresslab

    run = stresslab.run(
        preset="quick",
        overrides={
            "model.name": "fast_cnn",
            "data.train_subset": TRAIN_IMAGES,
            "data.test_subset": 1000,
            "train.epochs": epochs,
            "probes": ["evaluation"],
        },
        out=work / "train",
    )
    state = torch.load(run.path / "checkpoints" / "best.pt", weights_only=True)["state_dict"]
    path = work / "fast_cnn.pt"
    torch.save(state, path)
    return path, float(run.metrics["evaluation.accuracy"])


def count_cpu(log: Path) -> None:
    """Append each probe's CPU seconds (user + system, all threads of this process) to
    ``log`` as it finishes: the run times a probe from just after ``seed_everything`` to
    ``save_result``, and these two wrappers read the process's CPU clock at the same two
    points. On a shared machine CPU time moves far less with the other jobs than wall time."""
    from stresslab.runs import execute

    started: list[float] = []
    seed, save = execute.seed_everything, execute.save_result

    def seeded(*a: Any, **k: Any) -> Any:
        out = seed(*a, **k)
        started.append(time.process_time())
        return out

    def saved(run: Any, name: str, *a: Any, **k: Any) -> Any:
        cpu = time.process_time() - started[-1]
        out = save(run, name, *a, **k)
        with log.open("a") as f:
            f.write(json.dumps({"probe": name, "cpu_s": cpu}) + "\n")
        return out

    execute.seed_everything, execute.save_result = seeded, saved  # type: ignore[assignment]


def worker(spec: Spec, out: str) -> None:
    """One configuration, in its own process: load, build, ``stresslab.probe`` it."""
    import torch

    import stresslab
    from stresslab.data import load_split
    from stresslab.models import build_model

    count_cpu(Path(out + ".cpu.jsonl"))

    split = load_split(
        "fashion_mnist",
        train_subset=spec.train,
        val_fraction=spec.val / 60000,
        test_subset=spec.n if spec.n < 10000 else None,
        image_size=spec.px if spec.px != 28 else None,
    )
    torch.manual_seed(0)
    model = build_model(spec.model, split.info, spec.args)
    if spec.checkpoint:
        model.load_state_dict(torch.load(spec.checkpoint, weights_only=True))
    t0 = time.perf_counter()
    stresslab.probe(
        model.eval(),
        test=(split.test_x, split.test_y),
        train=(split.train_x, split.train_y),
        val=(split.val_x, split.val_y),
        class_names=split.info.class_names,
        background=split.info.background,
        probes="default" if tuple(spec.probes) == PROBES else list(spec.probes),
        out=out,
    )
    sys.stdout.write(json.dumps({"total_s": time.perf_counter() - t0}) + "\n")


def measure(spec: Spec, run_dir: Path, timeout: float) -> dict[str, Any]:
    """Run ``spec`` in a child process; each finished probe's seconds, the total, and
    whether it ran past ``timeout`` (then ``total_s`` is the timeout, a lower bound)."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(asdict(spec)), str(run_dir), *THREADS]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        record: dict[str, Any] = {"timed_out": True, "total_s": timeout}
    else:
        if proc.returncode != 0:
            raise SystemExit(f"{spec.label} ({spec.axis}) failed:\n{proc.stderr[-3000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        record = {"timed_out": False, **json.loads(lines[-1])}
    record["wall_s"] = time.perf_counter() - t0
    return {**record, **read_run(run_dir)}


def read_run(run_dir: Path) -> dict[str, Any]:
    """What a configuration's run directory holds: each finished probe's wall seconds (as the
    run recorded them), CPU seconds (``<probe>.cpu``) and the run's ``metrics.json``."""
    record: dict[str, Any] = {}
    results = run_dir / "results"
    for probe in PROBES:
        path = results / f"{probe}.json"
        if path.is_file():
            record[probe] = float(json.loads(path.read_text())["seconds"])
    cpu_log = Path(str(run_dir) + ".cpu.jsonl")
    if cpu_log.is_file():
        for line in cpu_log.read_text().splitlines():
            rec = json.loads(line)
            record[f"{rec['probe']}.cpu"] = rec["cpu_s"]
    metrics = run_dir / "metrics.json"
    record["metrics"] = json.loads(metrics.read_text()) if metrics.is_file() else {}
    return record


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope of log y on log x, and the smallest and largest slope between
    neighbouring points (NaN where fewer than two points)."""
    if len(xs) < 2:
        return math.nan, math.nan, math.nan
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)
    local = [(ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i]) for i in range(len(lx) - 1)]
    return slope, min(local), max(local)


def collect(todo: list[Spec], repeats: int, folders: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """The configurations' records read back from the folders of stopped benchmarks (their
    temporary folders, named in their logs): what each finished. A configuration measured in
    parts (``--probes``) is joined from every folder holding a part, the first one giving a
    probe's time; the configuration counts as timed out when a part lacks ``metrics.json``."""
    out: dict[str, list[dict[str, Any]]] = {f"{s.axis}/{s.label}": [] for s in todo}
    for rep in range(repeats):
        for spec in todo:
            stem = f"{spec.axis}-{spec.label.replace(':', '_')}-{rep}"
            found = [
                d
                for folder in folders
                for d in sorted(folder.glob(stem + "*"))
                if d.is_dir() and (d.name == stem or d.name.startswith(stem + "-"))
            ]
            if not found:
                continue
            record: dict[str, Any] = {"timed_out": False, "metrics": {}}
            for run_dir in found:
                part = read_run(run_dir)
                record["timed_out"] |= not part["metrics"]
                for key, value in part.items():
                    if key == "metrics":
                        record["metrics"] = {**value, **record["metrics"]}
                    else:
                        record.setdefault(key, value)
            out[f"{spec.axis}/{spec.label}"].append(record)
    return out


def medians(records: list[dict[str, Any]], key: str) -> float:
    """Median of ``key`` over a configuration's repeats; NaN where any repeat lacks it (a
    timed-out configuration that never reached that probe)."""
    values = [r.get(key) for r in records]
    if not values or any(v is None for v in values):
        return math.nan
    return statistics.median(float(v) for v in values)  # type: ignore[arg-type]


def run_all(
    todo: list[Spec], repeats: int, timeout: float, work: Path, jobs: int
) -> dict[str, list[dict[str, Any]]]:
    """Every configuration ``repeats`` times, each in a fresh process, ``jobs`` at a time
    (each process's CPU seconds are its own, whatever else runs)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[int, Spec]) -> tuple[str, dict[str, Any]]:
        rep, spec = item
        key = f"{spec.axis}/{spec.label}"
        record = measure(spec, work / run_dir_name(spec, rep), timeout)
        done = "timed out" if record["timed_out"] else "done"
        sys.stderr.write(
            f"[{time.strftime('%H:%M:%S')}] {key} repeat {rep}: {done}, {record['wall_s']:.0f} s\n"
        )
        return key, record

    out: dict[str, list[dict[str, Any]]] = {f"{s.axis}/{s.label}": [] for s in todo}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for key, record in pool.map(one, [(rep, spec) for rep in range(repeats) for spec in todo]):
            out[key].append(record)
    return out


def write_times(todo: list[Spec], runs: dict[str, list[dict[str, Any]]], out: Path) -> list[dict[str, Any]]:
    """``times.csv``: one row per configuration and probe, the medians of wall and CPU seconds."""
    rows = []
    for spec in todo:
        recs = runs[f"{spec.axis}/{spec.label}"]
        for probe in PROBES:
            rows.append(
                {
                    "axis": spec.axis,
                    "label": spec.label,
                    "x": spec.x,
                    "model": spec.model,
                    "px": spec.px,
                    "images": spec.n,
                    "probe": probe,
                    "wall_s": medians(recs, probe),
                    "cpu_s": medians(recs, f"{probe}.cpu"),
                    "repeats": len(recs),
                    "timed_out": sum(r["timed_out"] for r in recs),
                }
            )
    write_rows(rows, out / "times.csv")
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """``rows`` as a CSV with the columns of the first, an unmeasured (NaN) time left empty."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: "" if isinstance(v, float) and v != v else v for k, v in r.items()} for r in rows)


def write_fits(rows: list[dict[str, Any]], out: Path, key: str) -> list[dict[str, Any]]:
    """``fits.csv``: per probe and axis (images, pixels), the log-log slope of ``key``
    seconds over the sizes measured, the range of neighbouring slopes and the sizes."""
    fits = []
    for axis in ("images", "pixels"):
        for probe in PROBES:
            pts = sorted((r["x"], r[key]) for r in rows if r["axis"] == axis and r["probe"] == probe)
            pts = [(x, y) for x, y in pts if y == y and y > 0]
            slope, lo, hi = fit([p[0] for p in pts], [p[1] for p in pts])
            sizes = f"{pts[0][0]:g}-{pts[-1][0]:g}" if pts else ""
            fits.append({"axis": axis, "probe": probe, "slope": slope, "min": lo, "max": hi, "sizes": sizes})
    with (out / "fits.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fits[0]))
        w.writeheader()
        w.writerows(fits)
    return fits


def plot(rows: list[dict[str, Any]], out: Path, key: str) -> None:
    """``cost_curve.png``: seconds per probe against images, pixels and model (log scales),
    one panel per axis that has measurements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"images": "test images (28 px)", "pixels": "pixels per image (H x W)", "models": "model"}
    present = [a for a in labels if any(r["axis"] == a for r in rows)] or list(labels)
    size = (4 * len(present), 3.8)
    fig, grid = plt.subplots(1, len(present), figsize=size, layout="constrained", squeeze=False)
    axes = list(grid[0])
    for ax, axis in zip(axes, present, strict=True):
        xlabel = labels[axis]
        for i, probe in enumerate(PROBES):  # 11 probes: tab20's colours, one each
            pts = sorted((r["x"], r[key]) for r in rows if r["axis"] == axis and r["probe"] == probe)
            pts = [(x, y) for x, y in pts if y == y and y > 0]
            if pts:
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                ax.plot(xs, ys, marker="o", ms=3, label=probe, color=plt.get_cmap("tab20")(i))
        ax.set_yscale("log")
        if axis != "models":
            ax.set_xscale("log")
        else:
            ticks = sorted({(r["x"], r["model"].split(":")[-1]) for r in rows if r["axis"] == axis})
            ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"{'CPU' if key == 'cpu_s' else 'wall'} seconds")
    legend = {name: h for ax in axes for h, name in zip(*ax.get_legend_handles_labels(), strict=True)}
    if legend:
        fig.legend(list(legend.values()), list(legend), fontsize=7, loc="outside right center")
    fig.savefig(out / "cost_curve.png", dpi=72)
    plt.close(fig)


def print_table(rows: list[dict[str, Any]], fits: list[dict[str, Any]], key: str) -> None:
    """Seconds per probe and configuration, then each probe's exponents."""
    labels = list(dict.fromkeys((r["axis"], r["label"]) for r in rows))
    print(f"{key} per probe (medians); columns: " + ", ".join(f"{a}={lab}" for a, lab in labels))
    for probe in PROBES:
        cells = [
            next(r[key] for r in rows if (r["axis"], r["label"]) == al and r["probe"] == probe)
            for al in labels
        ]
        print(f"  {probe:15s}" + "".join(f"{c:9.2f}" for c in cells))
    print("growth exponents (log-log least squares; min..max between neighbouring sizes):")
    for probe in PROBES:
        cells = []
        for axis in ("images", "pixels"):
            f = next(f for f in fits if f["axis"] == axis and f["probe"] == probe)
            cells.append(f"{axis} {f['slope']:5.2f} ({f['min']:.2f}..{f['max']:.2f}) over {f['sizes']}")
        print(f"  {probe:15s} " + "; ".join(cells))


def cell(value: float) -> str:
    """Seconds to three significant digits (two decimals below 10), a dash when unmeasured."""
    if value != value:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def heading(axis: str, label: str) -> str:
    """A column's heading: ``1,000 images``, ``28 px``, or the model's name without its source."""
    if axis == "images":
        return f"{int(label):,} images"
    return label.replace("px", " px") if axis == "pixels" else label.split(":")[-1]


def write_markdown(rows: list[dict[str, Any]], fits: list[dict[str, Any]], out: Path, key: str) -> None:
    """``table.md``: the README's table, one row per probe: ``key`` seconds per configuration
    (images, pixels, models; each in its order), the images and pixels axes each followed by
    the probe's growth exponent (with the sizes it was fitted on where some of the axis's
    cells are missing)."""
    order = {"images": 0, "pixels": 1, "models": 2}
    xs = {(r["axis"], r["label"]): r["x"] for r in rows}
    columns = sorted(xs, key=lambda c: (order.get(c[0], 3), xs[c]))
    axes = list(dict.fromkeys(a for a, _ in columns))
    seconds = {(r["axis"], r["label"], r["probe"]): r[key] for r in rows}
    header = ["probe"]
    for axis in axes:
        header += [heading(axis, label) for a, label in columns if a == axis]
        header += [f"exponent in {axis}"] if axis != "models" else []
    lines = [header, ["---"] * len(header)]
    for probe in PROBES:
        cells = [probe]
        for axis in axes:
            mine = [label for a, label in columns if a == axis]
            cells += [cell(seconds[(axis, label, probe)]) for label in mine]
            if axis == "models":
                continue
            f = next(f for f in fits if f["axis"] == axis and f["probe"] == probe)
            measured = sum(seconds[(axis, label, probe)] > 0 for label in mine)
            partial = f" ({f['sizes']})" if measured < len(mine) else ""
            cells.append("-" if f["slope"] != f["slope"] else f"{f['slope']:.2f}{partial}")
        lines.append(cells)
    (out / "table.md").write_text("".join("| " + " | ".join(c) + " |\n" for c in lines))


def hanley_mcneil_half_width(auroc: float, n_pos: int, n_neg: int, z: float = 1.96) -> float:
    """Half-width of the normal 95% interval of an AUROC from ``n_pos`` and ``n_neg`` scores
    (Hanley and McNeil, "The meaning and use of the area under a ROC curve", Radiology 1982:
    SE^2 = [A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)] / (n_pos n_neg), Q1 = A/(2-A),
    Q2 = 2A^2/(1+A))."""
    a = auroc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return z * math.sqrt(max(var, 0.0))


def wilson_half_width(p: float, n: int) -> float:
    """Half the width of the Wilson 95% interval of a proportion ``p`` measured on ``n``."""
    from stresslab.metrics.proportions import wilson_interval

    low, high = wilson_interval(round(p * n), n)
    return (high - low) / 2


def default_of(probe: str, setting: str) -> int | None:
    """A probe's default setting, read from its class's signature."""
    import inspect

    from stresslab.probes import PROBES as REGISTERED

    value = inspect.signature(REGISTERED.get(probe).__init__).parameters[setting].default
    return None if value is None else int(value)


def sample_size_rows(metrics: dict[str, float], n_test: int) -> list[tuple[str, str, str, int, float, float]]:
    """(probe, headline, sample setting, its default size, measured value, 95% half-width)
    of each probe whose headline is a proportion or an AUROC; ``n_test`` images were tested."""
    m = metrics.get
    out = []
    for probe, key, setting in (
        ("evaluation", "evaluation.accuracy", "(all test images)"),
        ("adversarial", "adversarial.robust_accuracy", "max_images"),
        ("corruption", "corruption.mean_corruption_accuracy", "max_images"),
        ("representation", "representation.knn_accuracy", "max_test"),
    ):
        n = n_test if setting.startswith("(") else min(default_of(probe, setting) or n_test, n_test)
        value = m(key)
        if value is not None:
            out.append((probe, key.split(".", 1)[1], setting, n, value, wilson_half_width(value, n)))
    for probe, key, setting in (
        ("failures", "failures.n_high_confidence_errors", "(all test images)"),
        ("label_issues", "label_issues.n_test_issues", "(all test images)"),
        ("data_audit", "data_audit.n_test_flagged", "max_test"),
    ):
        n = n_test if setting.startswith("(") else min(default_of(probe, setting) or n_test, n_test)
        count = m(key)
        if count is not None:
            rate = count / n
            out.append((probe, key.split(".", 1)[1] + " / n", setting, n, rate, wilson_half_width(rate, n)))
    n_ood = min(default_of("ood", "n_images") or n_test, n_test)
    a = m("ood.ood_auroc_best")
    if a is not None:
        out.append(("ood", "ood_auroc_best", "n_images", n_ood, a, hanley_mcneil_half_width(a, n_ood, n_ood)))
    n_tr = default_of("shortcut", "n_transplant") or 0
    out.append(
        (
            "shortcut",
            "transplant flip rate (worst case 0.5)",
            "n_transplant",
            n_tr,
            0.5,
            wilson_half_width(0.5, n_tr),
        )
    )
    low, high = m("explain.gradcam.faithfulness_gain_ci_low"), m("explain.gradcam.faithfulness_gain_ci_high")
    if low is not None and high is not None:
        n_q = min(default_of("explain", "quality_images") or n_test, n_test)
        gain = m("explain.gradcam.faithfulness_gain", math.nan)
        out.append(
            (
                "explain",
                "gradcam faithfulness gain (bootstrap)",
                "quality_images",
                n_q,
                gain,
                (high - low) / 2,
            )
        )
    return out


def write_sample_sizes(runs: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], out: Path) -> None:
    """``sample_sizes.csv`` and a printed table: each default sample size, the 95% interval
    half-width it buys for the probe's headline at the value measured on the largest test set
    of the images axis, and the probe's CPU seconds there."""
    sizes = sorted(r["x"] for r in rows if r["axis"] == "images" and r["probe"] == "evaluation")
    if not sizes:
        return
    n = int(sizes[-1])
    metrics = runs[f"images/{n}"][0]["metrics"]
    cost = {r["probe"]: r["cpu_s"] for r in rows if r["axis"] == "images" and r["x"] == n}
    table = sample_size_rows(metrics, n)
    with (out / "sample_sizes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "probe",
                "headline",
                "setting",
                "n",
                "measured",
                "half_width_95",
                "cpu_s_at_test_images",
                "test_images",
            ]
        )
        for row in table:
            w.writerow([*row, cost.get(row[0], math.nan), n])
    print(f"default sample sizes, measured on {n} test images: 95% half-width, CPU seconds")
    for probe, head, setting, size, value, half in table:
        print(
            f"  {probe:15s} {head:40s} {setting:18s} n={size:6d} {value:8.3f} +-{half:.3f}"
            f" {cost.get(probe, math.nan):8.1f} s"
        )


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes, one repeat")
    ap.add_argument("--out", type=Path, default=Path("bench_out/cost_curve"))
    ap.add_argument(
        "--axes", nargs="*", default=["images", "pixels", "models"], help="images, pixels, models"
    )
    ap.add_argument("--images", type=int, nargs="*", help="test-set sizes of the images axis")
    ap.add_argument("--pixels", type=int, nargs="*", help="image sides (px) of the pixels axis")
    ap.add_argument("--pixel-images", type=int, help="test images of the pixels axis")
    ap.add_argument("--models", nargs="*", default=["fast", "resnet18", "vit"], help="fast, resnet18, vit")
    ap.add_argument("--model-px", type=int, default=64, help="image side of the models axis")
    ap.add_argument("--model-images", type=int, help="test images of the models axis")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the images axis's model")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--jobs", type=int, default=1, help="configurations run at once")
    ap.add_argument(
        "--checkpoint", type=Path, help="a fast_cnn state dict for the images axis (default: train one)"
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument(
        "--collect",
        type=Path,
        nargs="+",
        help="read back the folders of stopped benchmark runs (give the same sizes as they had)",
    )
    ap.add_argument(
        "--redraw",
        type=Path,
        nargs="+",
        help="only write the joined times.csv, fits.csv, table.md and cost_curve.png from these "
        "times.csv files (the first to measure a cell gives it)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per configuration (0: torch's default)"
    )
    ap.add_argument(
        "--probes",
        nargs="+",
        choices=PROBES,
        default=list(PROBES),
        help="time only these default probes (default: all, in their order)",
    )
    ap.add_argument("--train-images", type=int, default=TRAIN_IMAGES, help="training images the probes read")
    ap.add_argument("--val-images", type=int, default=VAL_IMAGES, help="validation images calibration reads")
    ap.add_argument(
        "--work",
        type=Path,
        help="folder for the configurations' run folders, kept after the benchmark (default: a "
        "temporary folder, removed at the end)",
    )
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    quick = args.quick
    args.images = args.images or ([250, 500, 1000, 2000] if quick else [250, 500, 1000, 2000, 5000, 10000])
    args.pixels = args.pixels or ([28, 64] if quick else [28, 64, 128, 224])
    args.pixel_images = args.pixel_images or (64 if quick else 256)
    args.model_images = args.model_images or (64 if quick else 256)
    args.repeats = args.repeats or 1
    args.probes = [p for p in PROBES if p in args.probes]
    return args


def read_times(paths: list[Path]) -> list[dict[str, Any]]:
    """The rows of ``times.csv`` files, joined: a (axis, label, probe) cell comes from the first
    file that measured it (a number in ``cpu_s``), so a later file fills only what is missing."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                rec: dict[str, Any] = {**row, "x": float(row["x"]), "px": int(row["px"])}
                rec["images"] = int(row["images"])
                for key in ("wall_s", "cpu_s"):
                    rec[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
                key3 = (rec["axis"], rec["label"], rec["probe"])
                held = cells.get(key3)
                if held is None or (held["cpu_s"] != held["cpu_s"] and rec["cpu_s"] == rec["cpu_s"]):
                    cells[key3] = rec
    return list(cells.values())


def main() -> int:
    args = parse()
    if args.redraw:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = read_times(args.redraw)
        write_rows(rows, args.out / "times.csv")
        plot(rows, args.out, "cpu_s")
        fits = write_fits(rows, args.out, "cpu_s")
        write_markdown(rows, fits, args.out, "cpu_s")
        print_table(rows, fits, "cpu_s")
        return 0
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        worker(Spec(**json.loads(args.worker[0])), args.worker[1])
        return 0
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        THREADS.extend(["--threads", str(args.threads)])
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    folder = (
        contextlib.nullcontext(str(args.work))
        if args.work
        else tempfile.TemporaryDirectory(prefix="bench-cost-")
    )
    with folder as tmp:
        work = Path(tmp)
        sys.stderr.write(f"working in {work}\n")
        t0 = time.perf_counter()
        if args.collect:
            checkpoint, accuracy = args.checkpoint, math.nan
            todo = specs(args, str(checkpoint))
            runs = collect(todo, args.repeats, args.collect)
        else:
            if args.checkpoint or "images" not in args.axes:
                checkpoint, accuracy = args.checkpoint, math.nan
            else:
                checkpoint, accuracy = train_checkpoint(work, args.epochs)
                sys.stderr.write(f"fast_cnn trained in {time.perf_counter() - t0:.0f} s: {accuracy:.2%}\n")
            todo = specs(args, str(checkpoint))
            runs = run_all(todo, args.repeats, args.timeout, work, args.jobs)
    todo = [s for s in todo if runs[f"{s.axis}/{s.label}"]]
    (args.out / "runs.json").write_text(json.dumps({"accuracy": accuracy, "runs": runs}, indent=1))
    rows = write_times(todo, runs, args.out)
    largest = max((s for s in todo if s.axis == "images"), key=lambda s: s.n, default=None)
    if largest is not None:  # the accuracy the probes saw, on the largest test set
        accuracy = runs[f"images/{largest.label}"][0]["metrics"].get("evaluation.accuracy", math.nan)
    key = "cpu_s"
    fits = write_fits(rows, args.out, key)
    write_markdown(rows, fits, args.out, key)
    plot(rows, args.out, key)
    write_sample_sizes(runs, rows, args.out)
    threads = args.threads or torch.get_num_threads()
    print(f"stresslab's default probes, {threads} torch threads, {args.repeats} repeat(s)")
    trained = args.checkpoint or f"{args.epochs} epochs"
    print(f"images axis: fast_cnn trained on {TRAIN_IMAGES} images ({trained}), {accuracy:.2%} test accuracy")
    print_table(rows, fits, key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
