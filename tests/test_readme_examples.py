"""Every ```python block of README.md runs, in order, each in a fresh namespace, so the
examples ("From Python", "Extending stresslab") cannot rot; then what they made is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import stresslab
from stresslab import ATTACKS, ATTRIBUTIONS, CORRUPTIONS, DATASETS, MODELS, PROBES
from stresslab.data import load_split
from stresslab.models import build_model
from tests.cli_helpers import registries_restored

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    """The code of every fenced ```python block of README.md, in order."""
    return BLOCK.findall(README.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 5, "the README's extending examples are python blocks"
    monkeypatch.chdir(tmp_path)  # the examples write runs/ under the working directory
    with registries_restored():
        for i, code in enumerate(blocks, start=1):
            exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": f"readme_block_{i}"})
        assert "digits" in DATASETS and "tiny_conv" in MODELS
        assert "dead_pixels" in CORRUPTIONS and "brightness" in PROBES
        assert "noise_linf" in ATTACKS and "gradient_x_input" in ATTRIBUTIONS

        # The dataset: 1,500 + 297 images of 8x8 in 10 classes.
        split = load_split("digits", val_fraction=0.1)
        assert split.info.num_classes == 10 and split.test_x.shape == (297, 1, 8, 8)
        assert len(split.train_y) + len(split.val_y) == 1500 and split.train_x.dtype == torch.uint8
        # The model: logits (N, K) and features for the probes.
        model = build_model("tiny_conv", split.info, {"width": 4})
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10) and model.features(
            torch.rand(2, 1, 8, 8)
        ).shape == (2, 16)
        # The corruption: its rate by severity, reproducible from the generator.
        x = torch.full((50, 3, 16, 16), 0.5)
        out = CORRUPTIONS.get("dead_pixels")(x, 5, torch.Generator().manual_seed(0))
        again = CORRUPTIONS.get("dead_pixels")(x, 5, torch.Generator().manual_seed(0))
        assert torch.equal(out, again) and out.shape == x.shape
        dead = (out == 0).all(dim=1).float().mean()
        assert abs(float(dead) - 0.2) < 0.02 and ((out == 0) | (out == 0.5)).all()

    # "From Python": probe() on a model in memory, its report kept; run() and load() agree.
    probe_report = (tmp_path / "digits-probe.html").read_text()
    assert "stresslab report" in probe_report and 'id="probe-explain"' in probe_report
    assert "Grad-CAM" in probe_report  # found the plain module's conv layer by itself
    npz_run = stresslab.load(tmp_path / "runs" / "digits-npz")
    assert npz_run.complete and len(npz_run.history) == 3 and npz_run.metrics["evaluation.accuracy"] > 0.5

    # The run of the last block used all four.
    run = tmp_path / "runs" / "digits-demo"
    assert (run / "DONE").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"brightness.dark_accuracy", "brightness.rest_accuracy", "evaluation.accuracy"} <= set(metrics)
    corruption = json.loads((run / "results" / "corruption.json").read_text())
    assert "dead_pixels" in json.dumps(corruption["tables"])
    adversarial = json.loads((run / "results" / "adversarial.json").read_text())
    assert "noise_linf" in adversarial["data"]["settings"]["attacks"]
    explain = json.loads((run / "results" / "explain.json").read_text())
    assert "gradient_x_input" in json.dumps(explain["metrics"])
    html = (run / "report.html").read_text()
    assert 'id="probe-brightness"' in html and "accuracy, darkest 30%" in html
