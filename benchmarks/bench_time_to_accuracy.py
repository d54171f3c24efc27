"""Time to accuracy: the hand-written study's recipe against stresslab's default, per seed.

The baseline is ``configs/fashion_mnist_custom_cnn.yaml`` (the Fashion-MNIST study's recipe:
custom_cnn, Adam 1e-3, batch 128, cosine, 15 epochs; stresslab's default until fast_cnn);
the default is what ``stresslab run`` trains (``configs/fashion_mnist.yaml``). Both train
exactly as in a run (same split, trainer, seeding), alternating per seed in one process. For
the benchmark only, test accuracy is measured after every epoch, outside the timed part.
Per seed it prints the wall time per epoch (training plus the validation pass, as a run
spends it), the first epoch (and the seconds of training up to its end) at which test
accuracy reached each target, and the final accuracy (the weights a run keeps: best
validation epoch; with weight averaging, test accuracy is that of the average, as a run
keeps it). Then the ratios baseline / default, medians over seeds. Both recipes follow the
same precision rule (``train.amp: auto``: bfloat16 autocast on CUDA and on CPUs with AMX,
float32 elsewhere), so the ratio is the recipe's; ``--amp off`` races them in float32. It
first prints each model's training throughput in float32 and bfloat16, which splits the
ratio into the model's cost per image and the epochs each recipe needs.

    .venv/bin/python benchmarks/bench_time_to_accuracy.py           # 2-core AMX CPU: 30 min
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --quick   # 2.5 min, a first look
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --amp off # both in float32: ~1 hour

``--quick`` reduces three things: one seed (0), a stratified 20,000-image training subset
(both recipes), and the baseline stopped after 5 of its 15 epochs (its schedule unchanged),
so its final accuracy is the one after epoch 5. Accuracies on the subset are lower than on
the full data and the targets may not be reached; the per-epoch time ratio is the robust
number there.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from stresslab.data.base import Split, to_float
from stresslab.devices import pick_device
from stresslab.models import build_model, model_summary
from stresslab.runs import config as config_mod
from stresslab.runs.config import RunConfig
from stresslab.runs.prepare import load_data, seed_everything
from stresslab.train.config import TrainConfig
from stresslab.train.loop import evaluate, train
from stresslab.train.precision import use_bf16

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TARGETS = (0.930, 0.933)


@dataclass
class Outcome:
    """One recipe and seed: per-epoch test accuracy and seconds, and the final accuracy."""

    recipe: str
    seed: int
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # training + validation, per epoch
    final_acc: float = math.nan

    @property
    def epoch_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    def reached(self, target: float) -> tuple[int, float] | None:
        """(first epoch with test accuracy >= target, seconds of training to its end), or None."""
        for i, acc in enumerate(self.test_acc):
            if acc >= target:
                return i + 1, sum(self.seconds[: i + 1])
        return None


class _Stop(Exception):
    """Raised after the last epoch a --quick baseline runs."""


def run_recipe(
    name: str,
    cfg: TrainConfig,
    model_name: str,
    split: Split,
    seed: int,
    device: torch.device,
    stop_after: int,
) -> Outcome:
    """Train one recipe as ``stresslab run`` would, measuring test accuracy after each epoch."""
    out = Outcome(name, seed)
    seed_everything(seed)
    model = build_model(model_name, split.info)

    def on_epoch(record: dict[str, float]) -> None:
        out.seconds.append(float(record["seconds"]))
        channels_last = cfg.channels_last != "off"
        _, acc = evaluate(model, split.test_x, split.test_y, cfg.eval_batch_size, device, channels_last)
        out.test_acc.append(acc)
        print(
            f"    {name} seed {seed} epoch {int(record['epoch']):2d}: {record['seconds']:6.1f} s, "
            f"val {record['val_acc']:.4f}, test {acc:.4f}",
            flush=True,
        )
        if len(out.test_acc) >= stop_after:
            raise _Stop

    try:
        train(model, split, cfg, device=device, seed=seed, on_epoch=on_epoch)
        _, out.final_acc = evaluate(model, split.test_x, split.test_y, cfg.eval_batch_size, device)
    except _Stop:
        out.final_acc = out.test_acc[-1]
    return out


def training_throughput(
    model_name: str, split: Split, cfg: TrainConfig, device: torch.device, amp: bool
) -> float:
    """Median training images/s of one model over 10 steps of ``cfg.batch_size`` real images
    (after 3 warm-up steps), in float32 or bfloat16 autocast: splits a ratio into the part the
    arithmetic explains and the part the recipe does."""
    seed_everything(0)
    model = build_model(model_name, split.info).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = to_float(split.train_x[: cfg.batch_size]).to(device).contiguous(memory_format=torch.channels_last)
    y = split.train_y[: cfg.batch_size].to(device)
    times = []
    for _ in range(13):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return len(y) / statistics.median(times[3:])


def _fmt_reach(r: tuple[int, float] | None) -> str:
    return "not reached" if r is None else f"epoch {r[0]:2d} ({r[1]:6.0f} s)"


def report(outcomes: list[Outcome], names: tuple[str, str]) -> dict[str, object]:
    """Print per-seed lines and median ratios baseline / default; return them as data."""
    base_name, ours_name = names
    seeds = sorted({o.seed for o in outcomes})
    by = {(o.recipe, o.seed): o for o in outcomes}
    summary: dict[str, object] = {"runs": [asdict(o) for o in outcomes]}
    print()
    for seed in seeds:
        for name in names:
            o = by[(name, seed)]
            reach = "  ".join(f"{t:.1%}: {_fmt_reach(o.reached(t))}" for t in TARGETS)
            print(
                f"seed {seed}  {name:10s} {o.epoch_seconds:6.1f} s/epoch  {reach}  "
                f"final {o.final_acc:.2%} after {len(o.test_acc)} epochs"
            )
    epoch_ratio = statistics.median(
        by[(base_name, s)].epoch_seconds / by[(ours_name, s)].epoch_seconds for s in seeds
    )
    print(f"\nwall time per epoch, {base_name} / {ours_name}: {epoch_ratio:.2f}x (median over seeds)")
    summary["epoch_time_ratio"] = epoch_ratio
    for t in TARGETS:
        ratios: list[float] = []
        lower = False
        for s in seeds:
            base_at, ours_at = by[(base_name, s)].reached(t), by[(ours_name, s)].reached(t)
            if ours_at is None:
                continue
            if base_at is None:  # the baseline never got there: its whole run is a lower bound
                lower = True
                ratios.append(sum(by[(base_name, s)].seconds) / ours_at[1])
            else:
                ratios.append(base_at[1] / ours_at[1])
        if len(ratios) < len(seeds):
            text = f"{ours_name} did not reach it in {len(seeds) - len(ratios)} of {len(seeds)} seeds"
            value = None
        else:
            value = statistics.median(ratios)
            text = f"{'>= ' if lower else ''}{value:.2f}x"
            if lower:
                text += f" ({base_name} did not reach it in some seeds: its whole run counted)"
        print(f"time to {t:.1%} test accuracy, {base_name} / {ours_name}: {text}")
        summary[f"time_to_{t:.3f}_ratio"] = value
    for name in names:
        finals = [by[(name, s)].final_acc for s in seeds]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        print(
            f"final test accuracy, {name}: mean {statistics.mean(finals):.2%}, "
            f"std {spread:.2%} over seeds {seeds}"
        )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="seed 0, 20,000 training images, baseline stops after 5 epochs"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument(
        "--amp",
        choices=["auto", "off", "bf16"],
        default=None,
        help="train.amp for both recipes (default: as configured, auto: bfloat16 on CUDA and AMX CPUs)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base_cfg = config_mod.resolve(CONFIGS / "fashion_mnist_custom_cnn.yaml")
    ours_cfg = config_mod.resolve()  # the default study: what `stresslab run` trains
    if args.amp is not None:
        base_cfg = base_cfg.model_copy(update={"train": base_cfg.train.model_copy(update={"amp": args.amp})})
        ours_cfg = ours_cfg.model_copy(update={"train": ours_cfg.train.model_copy(update={"amp": args.amp})})
    seeds, stop_base, overrides = args.seeds, base_cfg.train.epochs, {}
    if args.quick:
        seeds, stop_base, overrides = [0], 5, {"train_subset": 20000}
    data = base_cfg.data.model_copy(update=overrides)
    if data != ours_cfg.data.model_copy(update=overrides):
        raise SystemExit("the two configs load different data; the race would not be fair")
    split = load_data(RunConfig(data=data))
    device = pick_device(args.device)
    names = (base_cfg.model.name, ours_cfg.model.name)
    for name in names:
        s = model_summary(build_model(name, split.info), split.info)
        print(f"{name}: {s['params']:,} parameters, {s['gflops'] * 1e3:.1f} MFLOP forward per image")
    print(
        f"device {device}, {torch.get_num_threads()} threads, {len(split.train_y)} training images, "
        f"seeds {seeds}{', quick' if args.quick else ''}",
        flush=True,
    )
    print("training throughput (images/s, median of 10 steps at each recipe's batch size):")
    for name, cfg in zip(names, (base_cfg.train, ours_cfg.train), strict=True):
        fp32 = training_throughput(name, split, cfg, device, amp=False)
        bf16 = training_throughput(name, split, cfg, device, amp=True)
        used = "bfloat16" if use_bf16(cfg.amp, device) else "float32"
        print(
            f"  {name:10s} float32 {fp32:7.0f}  bfloat16 autocast {bf16:7.0f}  ({bf16 / fp32:.2f}x); "
            f"the recipe uses {used}"
        )
    outcomes = []
    t0 = time.perf_counter()
    for seed in seeds:  # alternate, so a change in machine load hits both recipes alike
        outcomes.append(run_recipe(names[0], base_cfg.train, names[0], split, seed, device, stop_base))
        outcomes.append(
            run_recipe(names[1], ours_cfg.train, names[1], split, seed, device, ours_cfg.train.epochs)
        )
    summary = report(outcomes, names)
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
