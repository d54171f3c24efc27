"""Plugins: a package's ``stresslab.plugins`` entry point, or a config's ``plugins:`` list,
registers its own model, probe, attack, attribution method and corruption, and the command
line and runs see them like the built-ins."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stresslab import plugins
from stresslab.attacks import ATTACKS
from stresslab.attributions import ATTRIBUTIONS
from stresslab.corruptions import CORRUPTIONS
from stresslab.errors import ConfigError
from stresslab.models import MODELS
from stresslab.plugins import load_plugins
from stresslab.probes import PROBES
from tests.cli_helpers import invoke, registries_restored, run_ok

# One module registering one of each kind of part, as a user's package would.
PLUGIN = """
import torch
from torch import nn

from stresslab import (
    Attack, Attribution, Classifier, Probe, ProbeResult, register_attack, register_attribution,
    register_corruption, register_model, register_probe,
)
from stresslab.attacks.base import AttackOutput


class Mlp(Classifier):
    def __init__(self, info, hidden):
        super().__init__(info.mean, info.std)
        pixels = info.channels * info.height * info.width
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, info.num_classes)


@register_model("{prefix}_mlp")
def mlp(info, *, hidden: int = 16):
    return Mlp(info, hidden)


@register_probe("{prefix}_confidence")
class MeanConfidence(Probe):
    def __init__(self, *, scale: float = 1.0):
        self.scale = scale

    def run(self, ctx):
        conf = float(ctx.predictions.probs.max(dim=1).values.mean())
        return ProbeResult(metrics={{"mean_confidence": self.scale * conf}})


@register_attack("{prefix}_sign")
class SignNoise(Attack):
    norms = ("linf",)

    def run(self, model, x, y, epsilon, *, generator=None):
        noise = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
        adv = (x + epsilon * noise).clamp(0, 1)
        return AttackOutput(adv, model(adv))


@register_attribution("{prefix}_input")
class InputTimesOne(Attribution):
    label = "input"

    def _attribute(self, model, x, target, generator):
        return x


@register_corruption("{prefix}_invert")
def invert(x, severity, generator):
    return x + severity / 5 * (1 - 2 * x)
"""


def write_plugin(root: Path, module: str, prefix: str, entry_point: bool) -> None:
    """``root/<module>.py`` registering parts named ``<prefix>_*``; with ``entry_point`` also a
    ``<module>-0.1.dist-info`` declaring it in the ``stresslab.plugins`` group."""
    (root / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(prefix=prefix)))
    if entry_point:
        info = root / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[stresslab.plugins]\n{prefix} = {module}\n")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for plugins, entry points not yet loaded, and every registry and
    imported plugin module as they were afterwards."""
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    with registries_restored():
        yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("sl_test_plugin"):
            del sys.modules[name]


def test_entry_point_plugin_shows_in_list_and_its_parts_build(fresh: Path) -> None:
    write_plugin(fresh, "sl_test_plugin_ep", "ep", entry_point=True)
    assert "ep_mlp" not in MODELS
    out = run_ok(["list"])
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    assert "ep_mlp" in lines["models"] and "ep_confidence" in lines["probes"]
    assert "ep_sign_linf" in lines["attacks"] and "ep_input" in lines["attribution methods"]
    assert "ep_invert" in lines["corruptions"]
    x = torch.rand(2, 1, 6, 6)
    assert torch.equal(CORRUPTIONS.get("ep_invert")(x, 5, torch.Generator()), 1 - x)
    assert PROBES.build("ep_confidence", scale=2.0).scale == 2.0
    assert ATTACKS.build("ep_sign_linf").norm == "linf"
    assert ATTRIBUTIONS.build("ep_input").name == "ep_input"
    with pytest.raises(
        ConfigError, match=r"unknown setting 'hiden' of model 'ep_mlp' \(did you mean 'hidden'"
    ):
        MODELS.check("ep_mlp", {"hiden": 3}, bound=1)


def test_a_run_uses_an_entry_point_plugin_model_and_probe(fresh: Path, fmnist_root: str) -> None:
    write_plugin(fresh, "sl_test_plugin_run", "run", entry_point=True)
    out = fresh / "run"
    args = ["run", "--out", str(out), "--set", f"data.root={fmnist_root}", "--set", "data.train_subset=200"]
    args += ["--set", "data.test_subset=100", "--set", "train.epochs=1", "--set", "model.name=run_mlp"]
    args += [
        "--set",
        "model.args={hidden: 8}",
        "--set",
        "probes={evaluation: {}, run_confidence: {scale: 2}}",
    ]
    run_ok(args)
    metrics = json.loads((out / "metrics.json").read_text())
    flat = json.dumps(metrics)
    assert "run_confidence.mean_confidence" in flat


def test_config_plugins_key_imports_a_module_before_names_are_checked(fresh: Path, fmnist_root: str) -> None:
    write_plugin(fresh, "sl_test_plugin_cfg", "cfg", entry_point=False)
    config = fresh / "run.yaml"
    config.write_text(
        textwrap.dedent(f"""
        plugins: [sl_test_plugin_cfg]
        data: {{dataset: fashion_mnist, root: {fmnist_root}, train_subset: 200, test_subset: 100}}
        model: {{name: cfg_mlp, args: {{hidden: 8}}}}
        train: {{epochs: 1}}
        probes: [cfg_confidence]
        """)
    )
    assert "cfg_mlp" not in MODELS
    run_ok(["run", str(config), "--out", str(fresh / "run")])
    assert "cfg_mlp" in MODELS
    assert (fresh / "run" / "metrics.json").exists()


def test_a_plugin_that_fails_to_import_is_named(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^plugins\[1\]: plugin module 'sl_test_plugin_missing' failed"):
        load_plugins(["json", "sl_test_plugin_missing"])
    (fresh / "sl_test_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    res = invoke(["run", "--set", "plugins=[sl_test_plugin_broken]", "--out", str(fresh / "r")])
    assert res.exit_code != 0 and "plugins[0]" in res.output and "boom" in res.output
    assert not (fresh / "r").exists()
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)  # a new package was installed
    info = fresh / "sl_test_plugin_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sl-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[stresslab.plugins]\nbroken = sl_test_plugin_broken\n")
    with pytest.raises(
        ConfigError, match=r"plugin 'broken' \(entry point broken = sl_test_plugin_broken .*boom"
    ):
        load_plugins()
