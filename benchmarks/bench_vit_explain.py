"""Grad-CAM and attention rollout on a small trained vision transformer (Fashion-MNIST).

Usage: stresslab run configs/fashion_mnist_vit.yaml --out /tmp/vit/run, then
python benchmarks/bench_vit_explain.py [run_dir] (default /tmp/vit/run).
On the seeded stratified sample of 256 test images the explain probe uses: per method, the
share of non-constant maps, the deletion gain over random orders (zero fill, 20 steps, 2
random orders) with its one-sided Wilcoxon p-value, and the deletion + insertion gain with
its 95% CI, and the time per map.
"""

import sys
import time
from pathlib import Path

import torch
from scipy.stats import wilcoxon

from stresslab.attributions import ATTRIBUTIONS
from stresslab.data.base import to_float
from stresslab.data.sampling import stratified_sample
from stresslab.data.split import load_split
from stresslab.models.factory import build_model
from stresslab.models.layers import constant_maps
from stresslab.models.weights import load_checkpoint, load_weights
from stresslab.probes.explain.checks import mean_ci
from stresslab.probes.explain.quality import curve_auc, deletion_insertion_curves

torch.set_num_threads(2)
run = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vit/run")
split = load_split("fashion_mnist", train_subset=3000, test_subset=1000, val_fraction=0.02)
model = build_model("timm:vit_tiny_patch16_224", split.info, {"img_size": 28, "patch_size": 4, "depth": 6})
load_weights(model, load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"], "last.pt")
model.eval()
pos = stratified_sample(torch.as_tensor(split.test_y), 256, seed=0)
x = to_float(split.test_x[pos])
with torch.no_grad():
    pred = model(x).argmax(1)
print(f"accuracy on the sample {float((pred == torch.as_tensor(split.test_y)[pos]).float().mean()):.3f}")
g = torch.Generator().manual_seed(13)
base = torch.zeros(1, 1, 1, 1)
orders = [torch.rand(len(x), 28, 28, generator=g) for _ in range(2)]
rand = [deletion_insertion_curves(model, x, r, pred, base, steps=20) for r in orders]
rd = torch.stack([r[0] for r in rand]).mean(0)
ri = torch.stack([r[1] for r in rand]).mean(0)
for name in ("gradcam", "attention_rollout"):
    method, _ = ATTRIBUTIONS.build(name).prepare(model, split.info)
    t = time.time()
    maps = method.attribute(model, x, pred, batch_size=64)
    per_map = (time.time() - t) / len(x)
    share = 1 - float(constant_maps(maps).float().mean())
    d, i = deletion_insertion_curves(model, x, maps, pred, base, steps=20)
    gd = curve_auc(rd) - curve_auc(d)
    gain = gd + curve_auc(i) - curve_auc(ri)
    pdel = wilcoxon(gd.double().numpy(), alternative="greater").pvalue
    pg = wilcoxon(gain.double().numpy(), alternative="greater").pvalue
    print(
        f"{method.label} ({getattr(method, 'layer', '') or 'all layers'}): non-constant {share:.3f}; "
        f"deletion AUC {float(curve_auc(d).mean()):.3f} vs random {float(curve_auc(rd).mean()):.3f}, "
        f"gain {float(gd.mean()):+.3f} p={pdel:.2g}; del+ins gain {float(gain.mean()):+.3f} "
        f"CI {mean_ci(gain)} p={pg:.2g}; {per_map * 1000:.1f} ms/map"
    )
