"""Grad-CAM layers of a trained fast_cnn: share of non-constant maps and the deletion test.

Usage: stresslab run --preset quick --out /tmp/x19/run, then
python benchmarks/bench_cam_layer.py [checkpoint] (default /tmp/x19/run/checkpoints/last.pt).
Prints the checked layer choice on 128 images and, per layer, on the 256-image sample the
explain probe uses: non-constant maps, the gain over random orders and one-sided p-values.
"""

import sys
import time

import torch
from scipy.stats import wilcoxon

from stresslab.attributions.gradcam import GradCam
from stresslab.data.base import to_float
from stresslab.data.sampling import stratified_sample
from stresslab.data.split import load_split
from stresslab.models.factory import build_model
from stresslab.models.layers import choose_cam_layer, constant_maps
from stresslab.models.weights import load_checkpoint, load_weights
from stresslab.probes.explain.checks import mean_ci
from stresslab.probes.explain.quality import curve_auc, deletion_insertion_curves

torch.set_num_threads(2)
split = load_split("fashion_mnist", train_subset=12000, test_subset=2000)
model = build_model("fast_cnn", split.info)
ck = load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else "/tmp/x19/run/checkpoints/last.pt")
load_weights(model, ck["state_dict"], "last.pt")
model.eval()
pos = stratified_sample(torch.as_tensor(split.test_y), 256, seed=0)
x = to_float(split.test_x[pos])
pred = model(x).argmax(1).detach()
t = time.time()
choice = choose_cam_layer(model, x[:128], prefer=model.cam_layer)
print("choice", choice.layer, choice.size, f"{choice.share:.3f}", f"{time.time() - t:.2f}s")
for tr in choice.tried:
    print("  tried", tr.layer, tr.size, f"{tr.share:.3f}")
g = torch.Generator().manual_seed(13)
rand = torch.rand(len(x), 28, 28, generator=g)
base = torch.zeros(1, 1, 1, 1)
rd, ri = deletion_insertion_curves(model, x, rand, pred, base, steps=20)
for layer in ("body.block3.convs", "body.block2", choice.layer):
    maps = GradCam(layer).attribute(model, x, pred)
    share = 1 - float(constant_maps(maps).float().mean())
    d, i = deletion_insertion_curves(model, x, maps, pred, base, steps=20)
    gd = curve_auc(rd) - curve_auc(d)
    gain = gd + curve_auc(i) - curve_auc(ri)
    pdel = wilcoxon(gd.double().numpy(), alternative="greater").pvalue
    pg = wilcoxon(gain.double().numpy(), alternative="greater").pvalue
    print(
        f"{layer}: non-constant {share:.3f}; deletion gain {float(gd.mean()):+.3f} p={pdel:.2g}; "
        f"del+ins gain {float(gain.mean()):+.3f} CI {mean_ci(gain)} p={pg:.2g}"
    )
